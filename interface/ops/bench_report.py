"""The benchmark's report: the docs/benchmarks.md table."""

from __future__ import annotations

from pathlib import Path


def table(R: dict) -> str:
    lines = []
    c = R["conditions"]
    lines.append(
        f"interface bench — {c['database']}, {c['cpus']} CPUs, load {c['load_avg_start'][0]:.1f}"
        f", {c.get('engine_processes', 1)} engine process(es)"
        f", ADT mix {c.get('adt_mix', 'churn')}{' (quick)' if c['quick'] else ''}"
    )
    S = R["scenarios"]
    if "receive" in S:
        lines.append("\n1. receive -> journal committed -> ACK (on_commit)")
        lines.append(
            f"{'conns':>5} {'server':<11} {'msgs':>6} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}"
        )
        for conns, rec in S["receive"].items():
            base = rec["python-hl7"]["msgs_per_s"]
            for name in ("engine", "python-hl7", "socket"):
                r = rec[name]
                lines.append(
                    f"{conns:>5} {name:<11} {r['messages']:>6} {r['msgs_per_s']:>8} {r['ack_p50_ms']:>8} "
                    f"{r['ack_p99_ms']:>8} {r['msgs_per_s'] / base:>6.2f}"
                )
        one = S["receive"].get(1) or S["receive"].get("1")  # one connection: a commit per message
        if "fsync" in c and one:
            f = [c["fsync"]["p50_ms"]] + ([c["fsync_end"]["p50_ms"]] if "fsync_end" in c else [])
            p50 = one["engine"]["ack_p50_ms"]
            lines.append(
                f"   fsync on the database's disk, p50: {' / '.join(map(str, f))} ms (after the warm-up"
                f" / at the end); 1-connection engine ACK p50 {p50} ms = fsync + {p50 - f[0]:.2f} ms"
            )
    if "adt" in S:
        lines.append("\n2. ADT mix, receive -> chart committed")
        lines.append(
            f"{'conns':>5} {'patients':>8} {'msgs':>6} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>9} "
            f"{'cpu ms/msg':>10} items"
        )
        for conns, r in S["adt"].items():
            lines.append(
                f"{conns:>5} {r['patients']:>8} {r['done']:>6} {r['msgs_per_s']:>8} {r['e2e_p50_ms']:>8} "
                f"{r['e2e_p99_ms']:>9} {r['engine_cpu_ms_per_msg']:>10} {r['items']}"
            )
    if "mdm" in S:
        lines.append("\n3. MDM^T02 with base64 PDF, receive -> index committed")
        lines.append(
            f"{'conns':>5} {'KB':>6} {'msgs':>5} {'ack/s':>7} {'ack p99':>8} {'index/s':>8} {'MB/s':>6} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'cpu ms':>7} {'hl7 MB/s':>8} {'ratio':>6} {'sock MB/s':>9} "
            f"{'peak RSS MB':>11}"
        )
        for conns, r in S["mdm"].items():
            h, k = r.get("python-hl7", {}), r.get("socket", {})
            lines.append(
                f"{conns:>5} {r['message_kb']:>6} {r['messages']:>5} {r['msgs_per_s']:>7} {r['ack_p99_ms']:>8} "
                f"{r['index_msgs_per_s']:>8} {r.get('index_mb_per_s')!s:>6} {r['index_e2e_p50_ms']:>8} "
                f"{r['index_e2e_p99_ms']:>8} {r['engine_cpu_ms_per_msg']:>7} {h.get('mb_per_s')!s:>8} "
                f"{r.get('index_ratio_vs_python_hl7')!s:>6} {k.get('mb_per_s')!s:>9} {r['peak_rss_mb']:>11}"
            )
    if "queue" in S:
        q = S["queue"]
        b = q["backlog"]
        lines.append(f"\n4. queue ({q['connections']} connections)")
        lines.append(
            f"   backlog drain: {b['backlog']} items in {b['drain_s']} s = {b['drain_items_per_s']} items/s,"
            f" {b['engine_cpu_ms_per_item']} ms CPU/item (journalled in-process at"
            f" {b['journal_fill_msgs_per_s']} msgs/s)"
        )
        lines.append(
            f"   other patients, e2e p50/p99 ms: {q['without_poison']['e2e_p50_ms']}/{q['without_poison']['e2e_p99_ms']}"
            f" without poison, {q['with_poison']['e2e_p50_ms']}/{q['with_poison']['e2e_p99_ms']} with one patient"
            f" blocked (ratio {q['other_patients_p50_ratio']}/{q['other_patients_p99_ratio']});"
            f" blocked items {q['with_poison']['blocked_patient_items']}"
        )
    for name in ("scale", "scale_pinned"):
        if name not in S:
            continue
        sc = S[name]
        pinned = sc.get("taskset")
        where = (
            f", engine on CPU {pinned['engine']}, database backends on CPU {pinned['database']} (taskset)"
            if pinned
            else ""
        )
        lines.append(
            f"\n5. scale-out: ADT mix at {sc['connections']} connections, N engine processes, one database{where}"
        )
        lines.append(
            f"{'procs':>5} {'msgs':>6} {'chart/s':>8} {'ratio':>6} {'ack/s':>8} {'ack p50':>8} {'ack p99':>8} "
            f"{'e2e p50':>8} {'e2e p99':>8} {'cpu ms/msg':>10} load"
        )
        for w, r in sc["processes"].items():
            lines.append(
                f"{w:>5} {r['done']:>6} {r['chart_msgs_per_s']:>8} {r['ratio_vs_1']:>6} {r['ack_msgs_per_s']:>8} "
                f"{r['ack_p50_ms']:>8} {r['ack_p99_ms']:>8} {r['e2e_p50_ms']:>8} {r['e2e_p99_ms']:>8} "
                f"{r['engine_cpu_ms_per_msg']:>10} {r['load_avg'][0]:.1f}"
            )
    if "journal" in S:
        j = S["journal"]
        lines.append(
            f"\n6. journal size: ADT mix ({j['messages_per_run']} msgs, {j['connections']} connections) "
            "on a pre-seeded journal"
        )
        lines.append(
            f"{'stored':>9} {'seed s':>7} {'patients':>8} {'chart/s':>8} {'x size0':>7} {'ack p50':>8} "
            f"{'ack p99':>8} {'p50 x':>6} {'p99 x':>6} {'cpu ms/msg':>10} load"
        )
        for size, row in j["sizes"].items():
            for pool, r in row["pools"].items():
                x = r["ratio_vs_smallest"]
                lines.append(
                    f"{size:>9} {row['seed']['seconds']:>7} {r['patients']:>8} {r['chart_msgs_per_s']:>8} "
                    f"{x['throughput']:>7} {r['ack_p50_ms']:>8} {r['ack_p99_ms']:>8} {x['ack_p50']:>6} "
                    f"{x['ack_p99']:>6} {r['engine_cpu_ms_per_msg']:>10} {r['load_avg'][0]:.1f}"
                )
    if "search" in S:
        ld = S["search"]["load"]
        lines.append(f"\nsearch: {ld['messages']} messages bulk-loaded in {ld['load_seconds']} s (50 a page)")
        lines.append(f"{'search':<34} {'rows':>5} {'p50 ms':>8} {'max ms':>8}")
        for name, r in S["search"]["searches"].items():
            lines.append(f"{name:<34} {r['rows']:>5} {r['p50_ms']:>8} {r['max_ms']:>8}")
    if "cross_check" in R:
        x = R["cross_check"]
        lines.append(
            f"\ncross-check: {Path(x['tool']).name} -c {x['connections']} -n {x['messages']} --synthetic adt_a01"
        )
        for name in ("engine", "python-hl7"):
            r = x[name] or {}
            lines.append(
                f"   {name:<11} {r.get('msgs_per_s')} msgs/s, ACK p50 {r.get('ack_p50_ms')} ms, "
                f"p99 {r.get('ack_p99_ms')} ms, ok {r.get('ok')}/{r.get('sent')}"
            )
    if "engine_peak_rss_mb" in R:
        mem = R.get("engine_memory") or {}
        lines.append(
            f"\nengine memory (whole run, all processes): sum of each process's peak RSS "
            f"{R.get('engine_peak_rss_mb')} MB; sampled every {mem.get('interval_s')} s, peak of the "
            f"summed RSS {mem.get('peak_rss_sum_mb')} MB, of the summed PSS {mem.get('peak_pss_sum_mb')} MB"
        )
        for p in R.get("engine_processes") or []:
            lines.append(
                f"   pid {p['pid']}: peak RSS {p.get('vmhwm')} MB, RSS {p.get('vmrss')} MB, "
                f"PSS {p.get('pss')} MB  {p.get('cmd', '')[-40:]}"
            )
    if "fhir" in S:
        f = S["fhir"]
        lines.append(f"\nF. FHIR on {f['patients']} bulk-loaded patients (one keep-alive connection)")
        lines.append(f"{'request':<17} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'cpu ms/req':>10}")
        for name in ("patient_read", "patient_search", "encounter_search"):
            r = f[name]
            lines.append(
                f"{name:<17} {r['requests']:>6} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8} "
                f"{r['cpu_ms_per_request']:>10}"
            )
    return "\n".join(lines)
