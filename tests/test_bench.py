"""``interface bench``: the workload generator keeps each patient's story in order on one
connection, and a tiny ``--quick`` run against a real engine subprocess produces the report with
every count right (timings are never asserted: they depend on the machine)."""

from __future__ import annotations

import json
import os
from collections import defaultdict

from interface.ops import bench, bench_workload

PG = os.environ.get("INTERFACE_TEST_DB_URL", "")


def _events(frame: bytes) -> tuple[str, str]:
    segs = frame[1:-2].split(b"\r")
    trigger = segs[0].split(b"|")[8].split(b"^")[1].decode()
    mrn = segs[2].split(b"|")[3].split(b"^")[0].decode()
    return trigger, mrn


def test_adt_mix_keeps_each_patient_on_one_connection_in_story_order():
    """Every patient's messages are on one connection, in the order of one of the stories."""
    wl = bench_workload.adt_mix(400, 4, "T", seed=3)
    assert wl.count >= 400 and len(wl.per_conn) == 4
    seen: dict[str, int] = {}
    per_patient: dict[str, list[str]] = defaultdict(list)
    for c, msgs in enumerate(wl.per_conn):
        for cid, frame in msgs:
            trigger, mrn = _events(frame)
            assert seen.setdefault(mrn, c) == c
            assert wl.mrn_of[cid] == mrn
            per_patient[mrn].append(trigger)
    stories = {events for _, events in bench_workload.STORIES}
    assert all(tuple(ev) in stories for ev in per_patient.values())
    assert len(per_patient) == wl.patients
    assert set(wl.types()) == {"A01", "A02", "A03", "A04", "A08"}


def _visit_fields(frame: bytes) -> tuple[str, str, str, str]:
    """(trigger, PV1-3 location, PV1-44 admit time, DG1-5 diagnosis time) of a bench frame."""
    segs = {s.split(b"|")[0]: s.split(b"|") for s in frame[1:-2].split(b"\r")}
    return (
        segs[b"MSH"][8].split(b"^")[1].decode(),
        segs[b"PV1"][3].decode(),
        segs[b"PV1"][44].decode(),
        segs[b"DG1"][5].decode(),
    )


def test_realistic_mix_keeps_admit_time_diagnosis_and_bed_per_visit():
    """Realistic (default): a visit's admit and diagnosis times never change and its bed changes
    on an A02 only; churn: every message of a story carries a new admit time."""
    wl = bench_workload.adt_mix(400, 4, "T", seed=3)
    by_patient: dict[str, list] = defaultdict(list)
    for msgs in wl.per_conn:
        for cid, frame in msgs:
            by_patient[wl.mrn_of[cid]].append(_visit_fields(frame))
    moved = 0
    for story in by_patient.values():
        assert len({admit for _, _, admit, _ in story}) == 1
        assert len({dg for _, _, _, dg in story}) == 1 and story[0][2] == story[0][3]
        for (_, before, _, _), (trigger, after, _, _) in zip(story, story[1:]):
            if trigger != "A02":
                assert after == before
            moved += after != before
    assert moved > 0  # transfers do move patients
    churn = bench_workload.adt_mix(400, 4, "T", seed=3, mix="churn")
    admits = defaultdict(set)
    for msgs in churn.per_conn:
        for cid, frame in msgs:
            admits[churn.mrn_of[cid]].add(_visit_fields(frame)[2])
    assert all(len(a) > 1 for mrn, a in admits.items() if len(by_patient[mrn]) > 1)


def test_poisoned_workload_puts_the_poison_first_for_its_patient():
    wl = bench_workload.adt_mix(100, 2, "T", poison_mrn="TPOISON")
    mine = [(_events(f)[0]) for _, f in wl.per_conn[0] if _events(f)[1] == "TPOISON"]
    assert mine == ["A13", "A01", "A08", "A02", "A08", "A03"]


def test_mdm_message_is_about_100_kb_with_a_base64_pdf():
    import base64
    import random

    frame = bench_workload.mdm_t02("M1", "DOC-1", "C1", 0.0, random.Random(1))
    assert 95 * 1024 < len(frame) < 110 * 1024
    obx = frame[1:-2].split(b"\r")[-2]
    data = base64.b64decode(obx.split(b"|")[5].split(b"^")[4])
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


def test_quick_run_reports_every_scenario_with_the_right_counts(tmp_path, capsys):
    """A real engine subprocess, 1 and 3 connections: every message ACKed with its control id,
    every work item done, the poisoned patient's items blocked, the report printed and saved."""
    out = tmp_path / "bench.json"
    argv = ["--quick", "--scale", "0.5", "--connections", "1,3", "--no-cross-check", "--json", str(out), "-q"]
    if PG:
        argv += ["--db", PG]
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    for heading in ("1. receive", "2. ADT mix", "3. MDM^T02", "4. queue"):
        assert heading in text
    R = json.loads(out.read_text())
    assert R["conditions"]["database"] == ("postgresql" if PG else "sqlite")
    S = R["scenarios"]
    for c in ("1", "3"):
        rec = S["receive"][c]
        for server in ("engine", "python-hl7", "socket"):
            assert rec[server]["mismatched"] == 0
            assert set(rec[server]["ack_codes"]) <= {"AA", "CA"}
        sent = rec["engine"]["messages"]
        assert sum(rec["engine"]["ack_codes"].values()) == sent == rec["python-hl7"]["messages"]
        assert S["adt"][c]["done"] == sent and S["adt"][c]["items"] == {"done": sent}
        mdm = S["mdm"][c]
        assert mdm["items"] == {"done": mdm["messages"]} and mdm["index_done"] == mdm["messages"]
        assert 95 < mdm["message_kb"] < 110 and mdm["peak_rss_mb"] > 0
        assert mdm["index_mb_per_s"] > 0 and mdm["python-hl7"]["msgs_per_s"] > 0
        assert mdm["socket"]["mb_per_s"] > 0 and mdm["index_ratio_vs_python_hl7"] > 0
    q = S["queue"]
    assert q["with_poison"]["blocked_patient_items"] == 6  # the poison and the 5 behind it
    assert q["with_poison"]["items"].get("error") == 1
    assert q["without_poison"]["items"] == {"done": q["without_poison"]["done"]}
    b = q["backlog"]
    assert b["items"] == {"done": b["messages"]}
    mem = R["engine_memory"]
    assert mem["samples"] > 0 and 0 < mem["peak_pss_sum_mb"] <= mem["peak_rss_sum_mb"]
    assert R["engine_processes"] and all(p["vmhwm"] > 0 for p in R["engine_processes"])
    assert "engine memory (whole run, all processes)" in text


def test_pooled_workload_spreads_stories_over_few_patients_each_on_one_connection():
    """With a patient pool, patients get several visits (distinct visit numbers), each patient
    still on a single connection, each visit's story in order."""
    wl = bench_workload.adt_mix(300, 4, "P", seed=2, pool=7)
    assert wl.patients == 7 and wl.count >= 300
    seen: dict[str, int] = {}
    visits: dict[str, list[str]] = defaultdict(list)
    for c, msgs in enumerate(wl.per_conn):
        for _, frame in msgs:
            trigger, mrn = _events(frame)
            assert seen.setdefault(mrn, c) == c
            visit = frame[1:-2].split(b"\r")[5].split(b"|")[19].split(b"^")[0].decode()
            visits[visit].append(trigger)
    assert len(visits) > 7  # several visits per patient
    stories = {events for _, events in bench_workload.STORIES}
    assert all(tuple(ev) in stories for ev in visits.values())


def test_scale_and_journal_scenarios_report_every_cell_with_the_right_counts(tmp_path, capsys):
    """1, 2 and 3 engine processes on one database, then a journal seeded in bulk to two sizes
    with two patient pools: every message ACKed AA/CA with its control id, every item done, the
    journal holds at least the seeded count, ratios are against the first cell."""
    out = tmp_path / "bench.json"
    argv = [
        "--quick",
        "--scale",
        "0.5",
        "--connections",
        "3",
        "--scenarios",
        "scale,journal",
        "--journal-sizes",
        "150,600",
        "--patients",
        "4,40",
        "--no-cross-check",
        "--json",
        str(out),
        "-q",
    ]
    if PG:
        argv += ["--db", PG]
    assert bench.main(argv) == 0
    text = capsys.readouterr().out
    assert "5. scale-out" in text and "6. journal size" in text
    S = json.loads(out.read_text())["scenarios"]
    procs = S["scale"]["processes"]
    assert list(procs) == ["1", "2", "3"] and procs["1"]["ratio_vs_1"] == 1.0
    for r in procs.values():
        assert r["mismatched"] == 0 and set(r["ack_codes"]) <= {"AA", "CA"}
        assert r["items"] == {"done": r["messages"]} and r["done"] == r["messages"]
    sizes = S["journal"]["sizes"]
    assert list(sizes) == ["150", "600"]
    assert sizes["600"]["seed"]["messages"] >= 600 and sizes["600"]["seed"]["added"] > 0
    assert ("database_mb" in sizes["600"]["seed"]) == bool(PG)
    for size, row in sizes.items():
        assert row["stored_after"] >= int(size)
        assert [int(p) for p in row["pools"]] == [4, 40]
        for pool, r in row["pools"].items():
            assert r["patients"] <= int(pool)
            assert r["mismatched"] == 0 and set(r["ack_codes"]) <= {"AA", "CA"}
            assert r["items"] == {"done": r["messages"]}
    assert sizes["150"]["pools"]["4"]["patients"] == 4
    assert sizes["150"]["pools"]["4"]["ratio_vs_smallest"]["throughput"] == 1.0


def test_scale_pinned_runs_the_engine_under_taskset_and_pins_the_database(tmp_path, capsys, monkeypatch):
    """--taskset ENGINE:DB: the scale scenario once more, each engine under `taskset -c ENGINE`
    (on PostgreSQL the bench database's backends pinned to DB); every message still done."""
    cpus = sorted(os.sched_getaffinity(0))
    spec = f"{cpus[0]}:{cpus[-1]}"
    started: list[list[str]] = []
    real = bench.Proc.__init__

    def spy(self, args, *a, **kw):
        started.append(list(args))
        real(self, args, *a, **kw)

    monkeypatch.setattr(bench.Proc, "__init__", spy)
    out = tmp_path / "bench.json"
    argv = ["--quick", "--scale", "0.3", "--connections", "2", "--scenarios", "scale", "--processes", "1"]
    argv += ["--taskset", spec, "--no-cross-check", "--json", str(out), "-q"]
    if PG:
        argv += ["--db", PG]
    assert bench.main(argv) == 0
    assert "database backends on CPU" in capsys.readouterr().out
    S = json.loads(out.read_text())["scenarios"]
    pinned = S["scale_pinned"]
    assert pinned["taskset"] == {"engine": str(cpus[0]), "database": str(cpus[-1])}
    r = pinned["processes"]["1"]
    assert r["items"] == {"done": r["messages"]} and r["mismatched"] == 0
    assert (r["backends_pinned"] > 0) == bool(PG)
    assert any(a[:3] == ["taskset", "-c", str(cpus[0])] for a in started)
    assert bench._cpu_set("0,2-4") == {0, 2, 3, 4}


def test_benchprofile_measures_both_phases(capsys):
    """`python -m interface.ops.benchprofile`: every message journalled and applied, both figures
    printed (the stage costs in docs/benchmarks.md come from it)."""
    from interface.ops import benchprofile

    assert benchprofile.main(["40"]) == 0
    out = capsys.readouterr().out
    assert "receive" in out and "drain" in out and "0 failed" in out
    assert benchprofile.main(["6", "--mdm", "--inline"]) == 0  # 100 KB documents into the index
    assert "6 messages" in capsys.readouterr().out
    n = int(out.split(" messages")[0].split()[-1])
    assert n >= 40 and f"({n} items, 0 failed)" in out


def test_fhir_scenario_reports_read_and_search_figures(tmp_path, capsys):
    """The fhir scenario, tiny: patients bulk-loaded, the console served on loopback, every
    request answered 200 (the scenario raises otherwise), p50/p95 produced and printed."""
    out = tmp_path / "bench.json"
    argv = ["--scenarios", "fhir", "--fhir-patients", "300", "--fhir-requests", "5", "--json", str(out), "-q"]
    if PG:
        argv += ["--db", PG]
    assert bench.main(argv) == 0
    assert "F. FHIR on 300 bulk-loaded patients" in capsys.readouterr().out
    F = json.loads(out.read_text())["scenarios"]["fhir"]
    assert F["patients"] == 300
    for name in ("patient_read", "patient_search", "encounter_search"):
        assert F[name]["requests"] == 5
        assert F[name]["p50_ms"] > 0 and F[name]["p95_ms"] >= F[name]["p50_ms"]


def test_search_scenario_reports_a_figure_for_each_search(tmp_path, capsys):
    """``interface bench --scenarios search`` (tiny): the journal is bulk-loaded and every kind of
    search gets p50/max figures and finds what the load put there (no timing asserted)."""
    from interface.ops import bench_search

    out = tmp_path / "search.json"
    argv = ["--quick", "--scale", "0.1", "--scenarios", "search", "--json", str(out), "-q"]
    if PG:
        argv += ["--db", PG]
    assert bench.main(argv) == 0
    R = json.loads(out.read_text())["scenarios"]["search"]
    assert R["load"]["messages"] == 200
    names = [name for name, _ in bench_search._searches(200)]
    assert list(R["searches"]) == names
    for name, r in R["searches"].items():
        assert r["p50_ms"] >= 0 and r["max_ms"] >= r["p50_ms"], name
    assert R["searches"]["control id exact, lower case"]["rows"] == 1
    assert R["searches"]["content, rare word"]["rows"] == 1
    assert R["searches"]["MRN with merged MRNs"]["rows"] > 0
    assert "search" in capsys.readouterr().out
