"""``interface bench``: the load benchmark (docs/benchmarks.md).

Runs the engine as a real subprocess (``interface run --no-web`` with its listeners on free
ports, SQLite in a temporary directory unless ``--db`` names a PostgreSQL server, in which case a
fresh database is created and dropped there) and drives it over MLLP from an asyncio client with
1 and 16 connections, one message in flight per connection, as MLLP senders do.

Scenarios, each at every ``--connections`` count:

``receive``  MLLP frame -> journal committed -> ACK (``ack: on_commit``): msgs/s and ACK latency
             p50/p99, with the same messages sent in the same run to two baselines that store
             nothing: python-hl7's asyncio MLLP server (``hl7.mllp``, parses and answers
             ``create_ack()``) and a bare asyncio socket that echoes a canned ACK.
``adt``      receive -> chart committed for a realistic ADT mix (A01/A04/A02/A08/A03, each
             patient's story in order on one connection, thousands of patients): end-to-end
             throughput measured by polling the work queue until every item of the run is done,
             and per-message latency from the send time to the later of the item's
             ``updated_at`` and the ACK's arrival (an item applied inline, ``apply: inline``,
             is committed before its ACK leaves; ``updated_at`` is when its transaction began).
             (``receive`` figures come from this same run: the ACK side of it.)
``mdm``      100 KB MDM^T02 with a base64 PDF in OBX-5, receive -> document index committed,
             with the peak RSS of the engine process during the run (VmHWM, reset first).
``scale``    (PostgreSQL) the ADT mix at 16 connections (the largest ``--connections``) with 1, 2
             and 3 engine processes (``interface run --workers N``) on one database: chart-committed
             msgs/s and the ratio to the 1-process figure of the same run.
``journal``  the ADT mix on a journal pre-seeded (bulk ``INSERT ... SELECT``) to 10^4, 10^5 and
             10^6 stored messages with done work items, each size with few and many distinct
             patients in the run (100 and 10,000): msgs/s, ACK p50/p99, ratios to the smallest size.
``queue``    (largest connection count) processing throughput of a backlog (the engine is killed
             after the last ACK and restarted; the drain of what was left is timed), and the
             end-to-end latency of other patients while one patient is blocked by a poison
             message, against the same run without poison.

Nothing here asserts timings; ``tests/test_bench.py`` runs ``--quick`` and checks counts.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SB, EB = b"\x0b", b"\x1c\x0d"
LOAD_TOOL = Path("/work/shared/tools/mllp_load.py")


# -- messages -------------------------------------------------------------------------------------

def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y%m%d%H%M%S")


FAMILIES = ["SMITH", "JONES", "GARCIA", "NGUYEN", "OKAFOR", "MULLER", "ROSSI", "KOWALSKI", "TANAKA",
            "SILVA", "HASSAN", "DUBOIS", "MURPHY", "LARSEN", "PATEL", "COHEN"]
GIVEN = ["ANNA", "JOHN", "MARIA", "WEI", "AMIR", "SARA", "LUCA", "EMMA", "OMAR", "NINA", "PAUL", "IDA"]


def adt(event: str, mrn: str, cid: str, t: float, *, visit: str, klass: str = "I",
        location: str = "4W^401^A", rng: random.Random | None = None, app: str = "BENCH",
        admitted: float | None = None) -> str:
    """One ~1 KB v2.5.1 ADT message, the shape registration systems send. ``admitted``: the
    visit's admit time (PV1-44) and its diagnosis's time (DG1-5); default the message time."""
    rng = rng or random.Random(hash(mrn))
    fam, giv = rng.choice(FAMILIES), rng.choice(GIVEN)
    dob = f"19{rng.randint(30, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    sex = rng.choice("MF")
    stamp = _ts(t)
    admit = _ts(admitted) if admitted is not None else stamp
    structure = {"A04": "ADT_A01", "A08": "ADT_A01", "A01": "ADT_A01", "A02": "ADT_A02",
                 "A03": "ADT_A03"}.get(event, "ADT_A01")
    segs = [
        f"MSH|^~\\&|{app}|HOSP|INTERFACE|HOSP|{stamp}||ADT^{event}^{structure}|{cid}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"EVN|{event}|{stamp}|||C{rng.randint(1000, 9999)}^CLERK^PAT^^^^^^HOSP|{stamp}",
        f"PID|1||{mrn}^^^HOSP^MR~{rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}^^^SSA^SS||"
        f"{fam}^{giv}^Q^^^^L||{dob}|{sex}|||{rng.randint(1, 999)} MAIN ST^APT {rng.randint(1, 40)}^SPRINGFIELD^IL^62701^USA^H||"
        f"^PRN^PH^^1^217^555{rng.randint(1000, 9999)}|^WPN^PH^^1^217^555{rng.randint(1000, 9999)}|EN|M|CHR|"
        f"{visit}^^^HOSP^AN",
        "PD1|||SPRINGFIELD GENERAL^^1234|1234^WELBY^MARCUS^^^DR",
        f"NK1|1|{fam}^JANE^^^^^L|SPO^SPOUSE^HL70063|{rng.randint(1, 999)} MAIN ST^^SPRINGFIELD^IL^62701^USA|^PRN^PH^^1^217^5551234",
        f"PV1|1|{klass}|{location}^HOSP||||1234^WELBY^MARCUS^^^DR^^^HOSP|5678^KILDARE^JAMES^^^DR^^^HOSP||MED|||||||"
        f"1234^WELBY^MARCUS^^^DR^^^HOSP||{visit}^^^HOSP^VN|||||||||||||||||||||||||{admit}",
        "PV2|||^CHEST PAIN",
        "AL1|1|DA|^PENICILLIN|SV|HIVES",
        f"DG1|1||R07.9^CHEST PAIN UNSPECIFIED^I10||{admit}|A",
    ]
    if event == "A03":
        segs[5] = segs[5] + f"|{stamp}"  # PV1-45 discharge date/time
    return "\r".join(segs) + "\r"


STORIES = (  # (weight, events): each patient's visit, in the order a registration system sends it
    (4, ("A01", "A02", "A08", "A03")),
    (3, ("A04", "A08", "A03")),
    (2, ("A04", "A08")),
    (1, ("A01", "A08", "A02", "A02", "A03")),
)


@dataclass
class Workload:
    """Messages per connection (each a list of (control id, frame bytes)); ``keys`` maps a
    control id to its patient."""

    per_conn: list[list[tuple[str, bytes]]]
    patients: int
    mrn_of: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(c) for c in self.per_conn)

    def types(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for conn in self.per_conn:
            for _, data in conn:
                t = data.split(b"|", 9)[8].split(b"^")[1].decode()
                out[t] = out.get(t, 0) + 1
        return out


MIXES = ("realistic", "churn")


def adt_mix(n: int, connections: int, tag: str, seed: int = 1, poison_mrn: str | None = None,
            pool: int | None = None, mix: str = "realistic") -> Workload:
    """About ``n`` ADT messages: patient stories (weighted above), each patient on one
    connection, patients interleaved at random but each story in its own order. With ``pool``,
    the stories are spread over at most ``pool`` distinct patients (a patient then has several
    visits, each with its own visit number, all on the patient's connection).

    ``mix``: ``realistic`` (default) sends what registration systems send: a visit keeps its
    admit time (PV1-44) and its diagnosis (DG1-5 time) on every message, and its location
    (PV1-3) changes on a transfer (A02) only. ``churn`` is the mix measured before 2026-11-24:
    every message carries a new admit time, a new diagnosis time and a random bed, so every
    message rewrites the visit's admit time, location and diagnoses (three more history rows
    and a diagnoses replace per message) — a worst case, kept to compare with older figures."""
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}")
    rng = random.Random(seed)
    weights = [w for w, _ in STORIES]
    stories: list[tuple[str, tuple[str, ...]]] = []
    total = 0
    p = 0
    conn_of: list[int] = []
    while total < n:
        events = rng.choices([s for _, s in STORIES], weights)[0]
        who = p % pool if pool else p
        stories.append((f"{tag}{who:06d}", events))
        conn_of.append(who % connections)
        total += len(events)
        p += 1
    per_conn_stories: list[list[tuple[str, tuple[str, ...]]]] = [[] for _ in range(connections)]
    for i, st in enumerate(stories):
        per_conn_stories[conn_of[i]].append(st)
    wl = Workload([], len({m for m, _ in stories}))
    base = time.time() - 86400
    seq = 0
    for c, sts in enumerate(per_conn_stories):
        slots = [i for i, (_, ev) in enumerate(sts) for _ in ev]
        rng.shuffle(slots)
        nxt = [0] * len(sts)
        msgs = []
        if poison_mrn is not None and c == 0:
            # a message its mapping cannot apply (cancel of a visit that does not exist):
            # it goes to the error queue and holds every later message for its patient
            cid = f"{tag}X{seq:07d}"
            seq += 1
            text = adt("A13", poison_mrn, cid, base, visit="NOVISIT", rng=random.Random(0))
            msgs.append((cid, SB + text.encode() + EB))
            wl.mrn_of[cid] = poison_mrn
        story: dict[int, tuple[float, str]] = {}  # slot -> (admit time, current bed): realistic
        for s in slots:
            mrn, events = sts[s]
            k = nxt[s]
            nxt[s] += 1
            event = events[k]
            cid = f"{tag}{seq:08d}"
            seq += 1
            klass = "O" if events[0] == "A04" else "I"
            loc = f"{rng.choice(['4W', '5E', '3N', 'ER'])}^{rng.randint(100, 499)}^{rng.choice('AB')}"
            admitted = None
            if mix == "realistic":
                admitted, bed = story.get(s, (base + seq, loc))
                loc = loc if event == "A02" else bed
                story[s] = (admitted, loc)
            visit = f"V{mrn}" if not pool else f"V{mrn}-{s}"
            text = adt(event, mrn, cid, base + seq, visit=visit, klass=klass, location=loc,
                       rng=random.Random(mrn), admitted=admitted)
            msgs.append((cid, SB + text.encode() + EB))
            wl.mrn_of[cid] = mrn
        wl.per_conn.append(msgs)
    if poison_mrn is not None:  # the poisoned patient's own story, behind the poison
        for k, event in enumerate(("A01", "A08", "A02", "A08", "A03")):
            cid = f"{tag}Y{k:07d}"
            text = adt(event, poison_mrn, cid, base + seq + k, visit=f"V{poison_mrn}")
            wl.per_conn[0].insert(1 + k * 7, (cid, SB + text.encode() + EB))
            wl.mrn_of[cid] = poison_mrn
    return wl


def _pdf(size: int, rng: random.Random) -> bytes:
    """A well-formed one-page PDF of about ``size`` bytes (an incompressible stream)."""
    head = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n" \
           b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n" \
           b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n"
    body = rng.randbytes(size)
    stream = b"4 0 obj << /Length " + str(len(body)).encode() + b" >>\nstream\n" + body
    return head + stream + b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def mdm_t02(mrn: str, doc: str, cid: str, t: float, rng: random.Random, kb: int = 100) -> bytes:
    """MDM^T02 (original document with content): TXA + one OBX ED with a base64 PDF whose
    encoded size is about ``kb`` KB."""
    pdf = _pdf(kb * 1024 * 3 // 4 - 300, rng)
    b64 = base64.b64encode(pdf).decode()
    stamp = _ts(t)
    segs = [
        f"MSH|^~\\&|TRANSCRIBE|HOSP|INTERFACE|HOSP|{stamp}||MDM^T02^MDM_T02|{cid}|P|2.5.1|||AL|NE||UNICODE UTF-8",
        f"EVN|T02|{stamp}",
        f"PID|1||{mrn}^^^HOSP^MR||DOE^JANE^Q||19800115|F|||12 MAIN ST^^SPRINGFIELD^IL^62701^USA^H",
        f"PV1|1|I|4W^401^A^HOSP||||1234^SMITH^JOHN^^^^MD^^HOSP|||MED|||||||||V{mrn}^^^HOSP^VN",
        f"TXA|1|CN^Consultation^HL70270|AP|{stamp}||{stamp}|{stamp}||5678^JONES^ALICE^^^^MD^^HOSP||"
        f"T900^WRIGHT^PAT^^^^^^HOSP|{doc}^TRANSCRIBE|||||AU|U|AV|AC||5678^JONES^ALICE^^^^MD^^HOSP^^^^^^{stamp}",
        f"OBX|1|ED|CN^Consultation^HL70270||HOSP^AP^PDF^Base64^{b64}||||||F",
    ]
    return SB + ("\r".join(segs) + "\r").encode() + EB


# -- the MLLP client ------------------------------------------------------------------------------

@dataclass
class SendResult:
    sent_at: dict[str, float]  # control id -> wall-clock send time
    latencies: list[float]  # seconds, send -> complete ACK frame
    codes: dict[str, int]
    mismatched: int
    elapsed: float
    cpu: float  # this process's CPU seconds during the run
    acked_at: dict[str, float] = field(default_factory=dict)  # control id -> wall-clock ACK arrival

    @property
    def count(self) -> int:
        return len(self.latencies)


async def _conn_send(host: str, port: int, msgs, res: SendResult, timeout: float) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=1 << 24), timeout)
    try:
        for cid, data in msgs:
            res.sent_at[cid] = time.time()
            t0 = time.perf_counter()
            writer.write(data)
            ack = await asyncio.wait_for(reader.readuntil(EB), timeout)
            res.latencies.append(time.perf_counter() - t0)
            res.acked_at[cid] = time.time()
            code, ctl = _msa(ack)
            res.codes[code] = res.codes.get(code, 0) + 1
            if ctl != cid:
                res.mismatched += 1
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def _msa(ack: bytes) -> tuple[str, str]:
    i = ack.find(b"MSA|")
    if i < 0:
        return "??", ""
    f = ack[i:].split(b"\r", 1)[0].split(b"|")
    return (f[1].decode("ascii", "replace") if len(f) > 1 else "??",
            f[2].decode("ascii", "replace").strip("\x1c\x0d") if len(f) > 2 else "")


def send_all(port: int, per_conn, *, host: str = "127.0.0.1", timeout: float = 60.0) -> SendResult:
    res = SendResult({}, [], {}, 0, 0.0, 0.0)

    async def go():
        await asyncio.gather(*(_conn_send(host, port, m, res, timeout) for m in per_conn if m))

    c0 = time.process_time()
    t0 = time.perf_counter()
    asyncio.run(go())
    res.elapsed = time.perf_counter() - t0
    res.cpu = time.process_time() - c0
    return res


# -- baselines: MLLP servers that store nothing ---------------------------------------------------

def _serve_baseline(kind: str, ready: str) -> None:
    async def main():
        if kind == "python-hl7":
            import hl7.mllp

            async def handle(reader, writer):
                try:
                    while not writer.is_closing():
                        msg = await reader.readmessage()
                        writer.writemessage(msg.create_ack())
                        await writer.drain()
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                finally:
                    writer.close()

            server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", 0, limit=1 << 24)
        else:  # a bare socket: find the frame, answer a canned AA with the control id
            class Echo(asyncio.Protocol):
                def connection_made(self, transport):
                    self.t, self.buf = transport, b""

                def data_received(self, data):
                    self.buf += data
                    while True:
                        end = self.buf.find(EB)
                        if end < 0:
                            return
                        frame_, self.buf = self.buf[1:end], self.buf[end + 2:]
                        cid = frame_.split(b"\r", 1)[0].split(b"|")[9]
                        self.t.write(SB + b"MSH|^~\\&|ECHO|ECHO|||20240101000000||ACK|" + cid
                                     + b"|P|2.5.1\rMSA|AA|" + cid + b"\r" + EB)

            server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        Path(ready).write_text(json.dumps({"port": port}))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Proc:
    """A subprocess with a ready file; ``stop`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], ready: Path, log: Path, env=None, cwd: Path = ROOT):
        self.ready = ready
        self.log = log
        if ready.exists():
            ready.unlink()
        self.logf = open(log, "ab")
        self.p = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        deadline = time.monotonic() + 90
        while not ready.exists():
            if self.p.poll() is not None:
                raise RuntimeError(f"{args[:4]} exited with {self.p.returncode}; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{args[:4]} not ready after 90 s; see {log}")
            time.sleep(0.05)
        self.info = json.loads(ready.read_text())

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self, kill: bool = False) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self.logf.close()


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                for c in f.read().split():
                    out.extend(_tree(int(c)))
    except OSError:
        pass
    return out


def peak_rss_mb(pid: int) -> float:
    """Peak resident set (VmHWM) summed over the process and its children, in MiB."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process and its children (from /proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def reset_peak_rss(pid: int) -> None:
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass


# -- the database side ------------------------------------------------------------------------------

class Probe:
    """Reads the engine's database (its own connection, plain reads: never takes the write lock)."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine

        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        self.engine = create_engine(url, poolclass=None, hide_parameters=True) if not url.startswith("sqlite") else \
            create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)

    def scalar(self, sql: str, **params):
        from sqlalchemy import text

        with self.engine.connect() as c:
            return c.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params):
        from sqlalchemy import text

        with self.engine.connect() as c:
            return c.execute(text(sql), params).all()

    def max_message_id(self) -> int:
        return self.scalar("SELECT COALESCE(MAX(id), 0) FROM messages") or 0

    def status_counts(self, base: int) -> dict[str, int]:
        return dict(self.rows("SELECT status, COUNT(*) FROM work_items WHERE message_id > :b GROUP BY status", b=base))

    def wait_done(self, base: int, expected: int, *, exclude_key: str | None = None,
                  timeout: float = 600.0, interval: float = 0.02) -> float:
        """Poll until ``expected`` items of messages after ``base`` exist and none of them is
        pending (items for ``exclude_key`` aside); returns the wall-clock time it was seen."""
        sql = ("SELECT COUNT(*), SUM(CASE WHEN status IN ('pending', 'held') THEN 1 ELSE 0 END) "
               "FROM work_items WHERE message_id > :b")
        params: dict = {"b": base}
        if exclude_key is not None:
            sql += " AND key != :k"
            params["k"] = exclude_key
        deadline = time.monotonic() + timeout
        from sqlalchemy import text

        with self.engine.connect() as c:
            while True:
                total, waiting = c.execute(text(sql), params).one()
                c.rollback()
                if total >= expected and not waiting:
                    return time.time()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"queue not drained after {timeout:.0f} s: {total} items, {waiting} waiting")
                time.sleep(interval)

    def done_times(self, base: int) -> dict[str, float]:
        """control id -> when its (last) item was done, epoch seconds."""
        out: dict[str, float] = {}
        for cid, at in self.rows("SELECT m.control_id, w.updated_at FROM work_items w JOIN messages m "
                                 "ON m.id = w.message_id WHERE m.id > :b AND w.status = 'done'", b=base):
            t = _epoch(at)
            if t > out.get(cid, 0.0):
                out[cid] = t
        return out

    def close(self) -> None:
        self.engine.dispose()


def _epoch(v) -> float:
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return v.timestamp()


# -- figures ----------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s))) - 1))]


def ms(v: float) -> float:
    return round(v * 1000, 2)


def ack_figures(r: SendResult) -> dict:
    return {"messages": r.count, "seconds": round(r.elapsed, 3), "msgs_per_s": round(r.count / r.elapsed, 1),
            "ack_p50_ms": ms(pct(r.latencies, 50)), "ack_p99_ms": ms(pct(r.latencies, 99)),
            "ack_codes": r.codes, "mismatched": r.mismatched, "client_cpu_share": round(r.cpu / r.elapsed, 2)}


def e2e_figures(r: SendResult, done: dict[str, float], drained_at: float, started: float,
                only: set[str] | None = None) -> dict:
    # the chart commit is known to be done by max(the item's updated_at, the ACK's arrival): an
    # inline-applied item commits before its ACK is sent, a queued one after its transaction began
    lat = [max(done[c], r.acked_at.get(c, 0.0)) - t for c, t in r.sent_at.items()
           if c in done and (only is None or c in only)]
    n = len(lat)
    span = drained_at - started
    return {"done": n, "seconds": round(span, 3), "msgs_per_s": round(n / span, 1) if span > 0 else None,
            "e2e_p50_ms": ms(pct(lat, 50)), "e2e_p99_ms": ms(pct(lat, 99))}


# -- the run ----------------------------------------------------------------------------------------

@dataclass
class Sizes:
    adt: dict[int, int]  # connections -> messages
    mdm: dict[int, int]
    backlog: int
    warmup: int
    scale: int = 3000  # ADT messages per process count (scale scenario)
    journal: int = 2000  # ADT messages per (journal size, patients) cell


def sizes(quick: bool, conns: list[int], scale: float = 1.0) -> Sizes:
    if quick:
        sz = Sizes({c: 30 if c == 1 else 160 for c in conns}, {c: 4 if c == 1 else 16 for c in conns}, 120, 16,
                   60, 40)
    else:
        sz = Sizes({c: 600 if c == 1 else 4000 for c in conns}, {c: 60 if c == 1 else 200 for c in conns},
                   3000, 200)
    if scale != 1.0:
        n = lambda v: max(2, int(v * scale))  # noqa: E731
        sz = Sizes({c: n(v) for c, v in sz.adt.items()}, {c: n(v) for c, v in sz.mdm.items()},
                   n(sz.backlog), n(sz.warmup), n(sz.scale), n(sz.journal))
    return sz


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="interface-bench-"))
        self.results: dict = {"scenarios": {}, "conditions": {}}
        self.pg_admin = None
        self.pg_name: str | None = None
        self.db_url = None
        self.engine: Proc | None = None
        self.probe: Probe | None = None
        self.seq = 0

    # set-up ------------------------------------------------------------------------------------

    def database(self) -> str:
        if not self.args.db:
            return f"sqlite:///{self.tmp / 'var' / 'interface.db'}"
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        url = self.args.db
        admin_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.pg_admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", hide_parameters=True)
        self.pg_name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with self.pg_admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.pg_name}"'))
        return make_url(url).set(database=self.pg_name).render_as_string(hide_password=False)

    def start_engine(self, workers: int | None = None) -> Proc:
        workers = self.args.engine_workers if workers is None else workers
        ready = self.tmp / "engine-ready.json"
        root = Path(self.args.engine_root).resolve() if self.args.engine_root else ROOT
        cmd = [sys.executable, "-c", "import sys; from interface.cli import main; sys.exit(main())",
               "run", "--var", str(self.tmp / "var"), "--no-web",
               "--db", self.db_url, "--channels", str(root / "channels"), "--mappings", str(root / "mappings"),
               "--listen", "adt=tcp:0:interface=127.0.0.1", "--listen", "mdm=tcp:0:interface=127.0.0.1",
               "--ready-file", str(ready)]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(root))
        if not self.args.db:
            env.pop("INTERFACE_DB_URL", None)
        return Proc(cmd, ready, self.tmp / "engine.log", env=env, cwd=root)

    def start_baseline(self, kind: str) -> Proc:
        ready = self.tmp / f"baseline-{kind}.json"
        return Proc([sys.executable, "-m", "interface.bench", "--baseline-server", kind, ready.as_posix()],
                    ready, self.tmp / f"baseline-{kind}.log")

    def tag(self) -> str:
        self.seq += 1
        return f"B{self.seq:02d}{uuid.uuid4().hex[:3].upper()}"

    # scenarios ---------------------------------------------------------------------------------

    def adt_run(self, conns: int, n: int, *, poison: bool = False,
                pool: int | None = None) -> tuple[dict, dict, Workload, SendResult]:
        tag = self.tag()
        poison_mrn = f"{tag}POISON" if poison else None
        wl = adt_mix(n, conns, tag, seed=self.seq, poison_mrn=poison_mrn, pool=pool, mix=self.args.mix)
        base = self.probe.max_message_id()
        port = self.engine.info["ports"]["adt"]
        cpu0 = cpu_seconds(self.engine.pid)
        t0 = time.time()
        res = send_all(port, wl.per_conn)
        cpu_ack = cpu_seconds(self.engine.pid) - cpu0
        expected = sum(1 for m in wl.mrn_of.values() if m != poison_mrn)
        drained = self.probe.wait_done(base, expected, exclude_key=f"mrn:{poison_mrn}" if poison else None)
        done = self.probe.done_times(base)
        counts = self.probe.status_counts(base)
        only = {c for c, m in wl.mrn_of.items() if m != poison_mrn} if poison else None
        e2e = e2e_figures(res, done, drained, t0, only)
        cpu = cpu_seconds(self.engine.pid) - cpu0
        e2e["items"] = counts
        e2e["patients"] = wl.patients
        e2e["mix"] = wl.types()
        e2e["engine_cpu_ms_per_msg"] = round(cpu * 1000 / max(res.count, 1), 2)
        ack = ack_figures(res)
        ack["engine_cpu_share"] = round(cpu_ack / res.elapsed, 2)
        return ack, e2e, wl, res

    def baseline_run(self, proc: Proc, wl: Workload) -> dict:
        res = send_all(proc.info["port"], wl.per_conn)
        return ack_figures(res)

    def mdm_run(self, conns: int, n: int) -> dict:
        tag = self.tag()
        rng = random.Random(self.seq)
        patients = max(conns, n // 2)
        # the patients exist first (a document for an unknown patient waits for its ADT)
        reg = [[] for _ in range(conns)]
        for i in range(patients):
            cid = f"{tag}R{i:07d}"
            reg[i % conns].append((cid, SB + adt("A04", f"{tag}{i:06d}", cid, time.time() - 3600,
                                                 visit=f"V{tag}{i:06d}", klass="O").encode() + EB))
        base = self.probe.max_message_id()
        send_all(self.engine.info["ports"]["adt"], reg)
        self.probe.wait_done(base, patients)
        per_conn = [[] for _ in range(conns)]
        for i in range(n):
            cid = f"{tag}D{i:07d}"
            mrn = f"{tag}{i % patients:06d}"
            per_conn[i % conns].append((cid, mdm_t02(mrn, f"DOC-{tag}-{i}", cid, time.time(), rng)))
        size = sum(len(m) for c in per_conn for _, m in c) / n
        base = self.probe.max_message_id()
        reset_peak_rss(self.engine.pid)
        rss_before = peak_rss_mb(self.engine.pid)
        cpu0 = cpu_seconds(self.engine.pid)
        t0 = time.time()
        res = send_all(self.engine.info["ports"]["mdm"], per_conn)
        drained = self.probe.wait_done(base, n)
        cpu = cpu_seconds(self.engine.pid) - cpu0
        done = self.probe.done_times(base)
        out = {"message_kb": round(size / 1024, 1), **ack_figures(res),
               **{f"index_{k}": v for k, v in e2e_figures(res, done, drained, t0).items()},
               "items": self.probe.status_counts(base),
               "rss_start_mb": round(rss_before, 1), "peak_rss_mb": round(peak_rss_mb(self.engine.pid), 1),
               "engine_cpu_ms_per_msg": round(cpu * 1000 / n, 2)}
        return out

    def backlog_run(self, conns: int, n: int) -> dict:
        """Processing alone: stop the engine, journal a backlog with ``Engine.receive_many`` (what
        the listeners do, in this process, groups of 100, no workers running), restart the engine
        and time the drain from its ready file to the last item done."""
        from . import db as dbmod
        from .channels import load_channels
        from .engine import Engine, Inbound

        tag = self.tag()
        wl = adt_mix(n, conns, tag, seed=self.seq, mix=self.args.mix)
        base = self.probe.max_message_id()
        self.engine.stop()
        root = Path(self.args.engine_root).resolve() if self.args.engine_root else ROOT
        channel = next(c for c in load_channels(root / "channels") if c.name == "adt")
        db = dbmod.make_engine(self.db_url)
        frames = [f[1:-2] for msgs in zip(*wl.per_conn) for _, f in msgs] + \
            [f[1:-2] for msgs in wl.per_conn for _, f in msgs[min(len(m) for m in wl.per_conn):]]
        t_fill = time.perf_counter()
        eng = Engine(db)
        for i in range(0, len(frames), 100):
            eng.receive_many([Inbound(channel, f, "bench") for f in frames[i:i + 100]])
        fill_s = time.perf_counter() - t_fill
        db.dispose()
        left = sum(v for k, v in self.probe.status_counts(base).items() if k in ("pending", "held"))
        t0 = time.time()
        self.engine = self.start_engine()
        t_ready = time.time()
        cpu0 = cpu_seconds(self.engine.pid)
        drained = self.probe.wait_done(base, wl.count)
        cpu = cpu_seconds(self.engine.pid) - cpu0
        counts = self.probe.status_counts(base)
        span = drained - t_ready
        return {"messages": wl.count, "journal_fill_msgs_per_s": round(len(frames) / fill_s, 1),
                "backlog": left, "restart_s": round(t_ready - t0, 2), "drain_s": round(span, 3),
                "drain_items_per_s": round(left / span, 1) if span > 0 else None, "items": counts,
                "engine_cpu_ms_per_item": round(cpu * 1000 / max(left, 1), 2)}

    def scale_run(self, conns: int, n: int, warmup: int, processes=(1, 2, 3)) -> dict:
        """The ADT mix at ``conns`` connections against 1, 2, 3 engine processes on one database
        (each started afresh, warmed up, then measured); ratios to the 1-process figure."""
        out: dict = {"connections": conns, "processes": {}}
        for w in processes:
            self.engine.stop()
            self.engine = self.start_engine(workers=w)
            self.adt_run(min(conns, 4), warmup)
            ack, e2e, _, _ = self.adt_run(conns, n)
            out["processes"][w] = {"chart_msgs_per_s": e2e["msgs_per_s"], "ack_msgs_per_s": ack["msgs_per_s"],
                                   "ack_p50_ms": ack["ack_p50_ms"], "ack_p99_ms": ack["ack_p99_ms"],
                                   "e2e_p50_ms": e2e["e2e_p50_ms"], "e2e_p99_ms": e2e["e2e_p99_ms"],
                                   "engine_cpu_ms_per_msg": e2e["engine_cpu_ms_per_msg"],
                                   "messages": ack["messages"], "done": e2e["done"], "items": e2e["items"],
                                   "ack_codes": ack["ack_codes"], "mismatched": ack["mismatched"],
                                   "load_avg": os.getloadavg()}
            self.log(f"scale {w} process(es): chart {e2e['msgs_per_s']}/s")
        one = out["processes"][processes[0]]["chart_msgs_per_s"]
        for r in out["processes"].values():
            r["ratio_vs_1"] = round(r["chart_msgs_per_s"] / one, 2) if one else None
        self.engine.stop()
        self.engine = self.start_engine()
        return out

    def seed_journal(self, target: int, pool: int = 10000) -> dict:
        """Bring the journal to ``target`` stored messages with bulk ``INSERT ... SELECT`` (one
        statement for ``messages``, one for their done ``work_items``): ADT header columns, a
        ~1 KB raw message, status processed, AA, a unique dedup key, patient ids over ``pool``
        patients. Chart rows are not seeded. Returns rows added and seconds taken."""
        from sqlalchemy import bindparam, text

        from .schema import TS

        have = self.probe.scalar("SELECT COUNT(*) FROM messages") or 0
        n = target - have
        if n <= 0:
            return {"added": 0, "seconds": 0.0, "messages": have}
        pg = self.db_url.startswith("postgresql")
        tag = self.tag()
        raw = adt("A08", "SEED000000", f"{tag}0", time.time(), visit="VSEED").encode()
        series = "generate_series(1, :n) AS s(g)" if pg else "s"
        cte = "" if pg else "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
        ev = ("CASE (g - 5 * (g / 5)) WHEN 0 THEN 'ADT^A01' WHEN 1 THEN 'ADT^A04' WHEN 2 THEN 'ADT^A08' "
              "WHEN 3 THEN 'ADT^A02' ELSE 'ADT^A03' END")
        ins = text(
            "INSERT INTO messages (channel, received_at, peer, sending_application, sending_facility, "
            "receiving_application, receiving_facility, control_id, message_type, structure, version, "
            "message_time, patient_id, status, raw, body_sha256, ack_code, dedup_key) "
            f"{cte}SELECT 'adt', :at, '127.0.0.1', 'SEED', 'HOSP', 'INTERFACE', 'HOSP', :tag || CAST(g AS TEXT), "
            f"{ev}, 'ADT_A01', '2.5.1', '20240101120000', 'SEED' || CAST((g - :pool * (g / :pool)) AS TEXT), "
            "'processed', :raw, 'seed' || :tag || CAST(g AS TEXT), 'AA', "
            f"'adt|SEED|HOSP|' || :tag || CAST(g AS TEXT) FROM {series}"
        ).bindparams(bindparam("at", type_=TS))
        items = text(
            "INSERT INTO work_items (message_id, channel, destination, key, status, attempts, "
            "next_attempt_at, created_at, updated_at) SELECT id, 'adt', 'chart', 'mrn:' || patient_id, "
            "'done', 1, :at, :at, :at FROM messages WHERE id > :base"
        ).bindparams(bindparam("at", type_=TS))
        at = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        base = self.probe.max_message_id()
        with self.probe.engine.begin() as c:
            c.execute(ins, {"n": n, "at": at, "tag": tag, "pool": pool, "raw": raw})
            c.execute(items, {"at": at, "base": base})
        if pg:
            with self.probe.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("ANALYZE messages"))
                c.execute(text("ANALYZE work_items"))
        out = {"added": n, "seconds": round(time.perf_counter() - t0, 1),
               "messages": self.probe.scalar("SELECT COUNT(*) FROM messages")}
        if pg:
            out["database_mb"] = round(self.probe.scalar("SELECT pg_database_size(current_database())") / 2**20)
        return out

    def journal_run(self, conns: int, n: int, sizes_: list[int], pools: list[int]) -> dict:
        """For each journal size (ascending): seed up to it, then the ADT mix over few and over
        many distinct patients; msgs/s and ACK p50/p99, with ratios to the smallest size."""
        out: dict = {"connections": conns, "messages_per_run": n, "sizes": {}}
        for size in sorted(sizes_):
            seed = self.seed_journal(size)
            self.log(f"journal seeded to {seed['messages']} (+{seed['added']} in {seed['seconds']} s)")
            row: dict = {"seed": seed, "pools": {}}
            for pool in pools:
                ack, e2e, wl, _ = self.adt_run(conns, n, pool=pool)
                row["pools"][pool] = {"patients": wl.patients, "chart_msgs_per_s": e2e["msgs_per_s"],
                                      "ack_msgs_per_s": ack["msgs_per_s"], "ack_p50_ms": ack["ack_p50_ms"],
                                      "ack_p99_ms": ack["ack_p99_ms"], "e2e_p50_ms": e2e["e2e_p50_ms"],
                                      "e2e_p99_ms": e2e["e2e_p99_ms"],
                                      "engine_cpu_ms_per_msg": e2e["engine_cpu_ms_per_msg"],
                                      "messages": ack["messages"], "done": e2e["done"], "items": e2e["items"],
                                      "ack_codes": ack["ack_codes"], "mismatched": ack["mismatched"],
                                      "load_avg": os.getloadavg()}
                self.log(f"journal {size} pool {pool}: chart {e2e['msgs_per_s']}/s, "
                         f"ack p50/p99 {ack['ack_p50_ms']}/{ack['ack_p99_ms']} ms")
            row["stored_after"] = self.probe.scalar("SELECT COUNT(*) FROM messages")
            out["sizes"][size] = row
        first = out["sizes"][min(sizes_)]["pools"]
        for row in out["sizes"].values():
            for pool, r in row["pools"].items():
                f = first[pool]
                r["ratio_vs_smallest"] = {
                    "throughput": round(r["chart_msgs_per_s"] / f["chart_msgs_per_s"], 2),
                    "ack_p50": round(r["ack_p50_ms"] / f["ack_p50_ms"], 2) if f["ack_p50_ms"] else None,
                    "ack_p99": round(r["ack_p99_ms"] / f["ack_p99_ms"], 2) if f["ack_p99_ms"] else None}
        return out

    def cross_check(self, conns: int, n: int, port: int, name: str) -> dict | None:
        if not LOAD_TOOL.exists() or self.args.no_cross_check:
            return None
        out = self.tmp / f"mllp_load-{name}-{conns}.json"
        cmd = [sys.executable, str(LOAD_TOOL), "--port", str(port), "-c", str(conns), "-n", str(n),
               "--synthetic", "adt_a01", "--allow-nack", "-q", "--json", str(out)]
        p = subprocess.run(cmd, capture_output=True, timeout=600)
        if not out.exists():
            return {"error": p.stderr.decode(errors="replace")[-300:]}
        doc = json.loads(out.read_text())
        lat = doc.get("latency_ms", {})
        counts = doc.get("counts", {})
        return {"msgs_per_s": doc.get("throughput_msg_s"), "ack_p50_ms": lat.get("p50"),
                "ack_p99_ms": lat.get("p99"), "ok": counts.get("ok"), "sent": counts.get("sent"),
                "client_cpu_pct": doc.get("client_cpu_pct")}

    # driver ------------------------------------------------------------------------------------

    def run(self) -> dict:
        a = self.args
        conns = [int(c) for c in a.connections.split(",")]
        sz = sizes(a.quick, conns, a.scale)
        scen = set(a.scenarios.split(","))
        R = self.results
        R["conditions"] = {
            "command": "interface bench " + " ".join(a.argv), "scale": a.scale, "quick": a.quick, "database": "postgresql" if a.db else "sqlite",
            "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(), "python": sys.version.split()[0],
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "engine_processes": a.engine_workers or (os.cpu_count() or 1),
            "engine_root": a.engine_root or str(ROOT),
            "adt_mix": a.mix,
        }
        baselines = {}
        try:
            self.db_url = self.database()
            (self.tmp / "var").mkdir(exist_ok=True)
            self.engine = self.start_engine()
            self.probe = Probe(self.db_url)
            if {"receive", "adt"} & scen:
                for kind in ("python-hl7", "socket"):
                    baselines[kind] = self.start_baseline(kind)
            # warm-up: the first messages pay for lazy imports and compiled mappings
            self.adt_run(min(conns[-1], 4), sz.warmup)
            R["conditions"]["load_avg_after_warmup"] = os.getloadavg()
            for c in conns:
                if {"receive", "adt"} & scen:
                    ack, e2e, wl, _ = self.adt_run(c, sz.adt[c])
                    rec = {"engine": ack}
                    for kind, proc in baselines.items():
                        rec[kind] = self.baseline_run(proc, wl)
                    base = rec["python-hl7"]
                    rec["ratio_vs_python_hl7"] = {
                        "throughput": round(ack["msgs_per_s"] / base["msgs_per_s"], 3),
                        "ack_p50": round(ack["ack_p50_ms"] / base["ack_p50_ms"], 2) if base["ack_p50_ms"] else None,
                        "ack_p99": round(ack["ack_p99_ms"] / base["ack_p99_ms"], 2) if base["ack_p99_ms"] else None}
                    R["scenarios"].setdefault("receive", {})[c] = rec
                    R["scenarios"].setdefault("adt", {})[c] = e2e
                    self.log(f"adt c={c}: ack {ack['msgs_per_s']}/s, chart {e2e['msgs_per_s']}/s")
                if "mdm" in scen:
                    R["scenarios"].setdefault("mdm", {})[c] = self.mdm_run(c, sz.mdm[c])
                    self.log(f"mdm c={c}: {R['scenarios']['mdm'][c]['index_msgs_per_s']}/s")
            if "queue" in scen:
                c = conns[-1]
                n = sz.adt[c] // 2
                _, clean, _, _ = self.adt_run(c, n)
                _, poisoned, wl, _ = self.adt_run(c, n, poison=True)
                poisoned["blocked_patient_items"] = self.probe.scalar(
                    "SELECT COUNT(*) FROM work_items WHERE key = :k AND status IN ('pending', 'error')",
                    k=f"mrn:{next(m for m in wl.mrn_of.values() if m.endswith('POISON'))}")
                q = {"connections": c, "without_poison": clean, "with_poison": poisoned,
                     "other_patients_p50_ratio": round(poisoned["e2e_p50_ms"] / clean["e2e_p50_ms"], 2),
                     "other_patients_p99_ratio": round(poisoned["e2e_p99_ms"] / clean["e2e_p99_ms"], 2)}
                q["backlog"] = self.backlog_run(c, sz.backlog)
                R["scenarios"]["queue"] = q
                self.log(f"queue: drain {q['backlog']['drain_items_per_s']}/s")
            if "scale" in scen:
                c = conns[-1]
                procs = tuple(int(w) for w in a.processes.split(","))
                R["scenarios"]["scale"] = self.scale_run(c, sz.scale, sz.warmup, procs)
            if "journal" in scen:
                c = conns[-1]
                js = [int(v) for v in (a.journal_sizes or ("200,1000" if a.quick else "10000,100000,1000000")).split(",")]
                pools = [int(v) for v in (a.patients or ("5,50" if a.quick else "100,10000")).split(",")]
                R["scenarios"]["journal"] = self.journal_run(c, sz.journal, js, pools)
            if not a.no_cross_check and LOAD_TOOL.exists() and {"receive", "adt"} & scen:
                c = conns[-1]
                n = 100 if a.quick else 5000
                R["cross_check"] = {"tool": str(LOAD_TOOL), "connections": c, "messages": n,
                                    "engine": self.cross_check(c, n, self.engine.info["ports"]["adt"], "engine"),
                                    "python-hl7": self.cross_check(c, n, baselines["python-hl7"].info["port"], "hl7")}
        finally:
            if self.engine is not None:
                R["engine_peak_rss_mb"] = round(peak_rss_mb(self.engine.pid), 1)
                self.engine.stop()
            for p in baselines.values():
                p.stop()
            R["conditions"]["load_avg_end"] = os.getloadavg()
            if self.probe is not None:
                self.probe.close()
            if self.pg_admin is not None:
                from sqlalchemy import text

                if self.pg_name:
                    with self.pg_admin.connect() as c:
                        c.execute(text(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
                self.pg_admin.dispose()
            if not a.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                R["conditions"]["kept"] = str(self.tmp)
        return R

    def log(self, text: str) -> None:
        if not self.args.quiet:
            print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- report ---------------------------------------------------------------------------------------

def table(R: dict) -> str:
    lines = []
    c = R["conditions"]
    lines.append(f"interface bench — {c['database']}, {c['cpus']} CPUs, load {c['load_avg_start'][0]:.1f}"
                 f", {c.get('engine_processes', 1)} engine process(es)"
                 f", ADT mix {c.get('adt_mix', 'churn')}{' (quick)' if c['quick'] else ''}")
    S = R["scenarios"]
    if "receive" in S:
        lines.append("\n1. receive -> journal committed -> ACK (on_commit)")
        lines.append(f"{'conns':>5} {'server':<11} {'msgs':>6} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
        for conns, rec in S["receive"].items():
            base = rec["python-hl7"]["msgs_per_s"]
            for name in ("engine", "python-hl7", "socket"):
                r = rec[name]
                lines.append(f"{conns:>5} {name:<11} {r['messages']:>6} {r['msgs_per_s']:>8} {r['ack_p50_ms']:>8} "
                             f"{r['ack_p99_ms']:>8} {r['msgs_per_s'] / base:>6.2f}")
    if "adt" in S:
        lines.append("\n2. ADT mix, receive -> chart committed")
        lines.append(f"{'conns':>5} {'patients':>8} {'msgs':>6} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>9} "
                     f"{'cpu ms/msg':>10} items")
        for conns, r in S["adt"].items():
            lines.append(f"{conns:>5} {r['patients']:>8} {r['done']:>6} {r['msgs_per_s']:>8} {r['e2e_p50_ms']:>8} "
                         f"{r['e2e_p99_ms']:>9} {r['engine_cpu_ms_per_msg']:>10} {r['items']}")
    if "mdm" in S:
        lines.append("\n3. MDM^T02 with base64 PDF, receive -> index committed")
        lines.append(f"{'conns':>5} {'KB':>6} {'msgs':>5} {'ack/s':>7} {'ack p99':>8} {'index/s':>8} "
                     f"{'p50 ms':>8} {'p99 ms':>8} {'peak RSS MB':>11}")
        for conns, r in S["mdm"].items():
            lines.append(f"{conns:>5} {r['message_kb']:>6} {r['messages']:>5} {r['msgs_per_s']:>7} {r['ack_p99_ms']:>8} "
                         f"{r['index_msgs_per_s']:>8} {r['index_e2e_p50_ms']:>8} {r['index_e2e_p99_ms']:>8} "
                         f"{r['peak_rss_mb']:>11}")
    if "queue" in S:
        q = S["queue"]
        b = q["backlog"]
        lines.append(f"\n4. queue ({q['connections']} connections)")
        lines.append(f"   backlog drain: {b['backlog']} items in {b['drain_s']} s = {b['drain_items_per_s']} items/s,"
                     f" {b['engine_cpu_ms_per_item']} ms CPU/item (journalled in-process at"
                     f" {b['journal_fill_msgs_per_s']} msgs/s)")
        lines.append(f"   other patients, e2e p50/p99 ms: {q['without_poison']['e2e_p50_ms']}/{q['without_poison']['e2e_p99_ms']}"
                     f" without poison, {q['with_poison']['e2e_p50_ms']}/{q['with_poison']['e2e_p99_ms']} with one patient"
                     f" blocked (ratio {q['other_patients_p50_ratio']}/{q['other_patients_p99_ratio']});"
                     f" blocked items {q['with_poison']['blocked_patient_items']}")
    if "scale" in S:
        sc = S["scale"]
        lines.append(f"\n5. scale-out: ADT mix at {sc['connections']} connections, N engine processes, one database")
        lines.append(f"{'procs':>5} {'msgs':>6} {'chart/s':>8} {'ratio':>6} {'ack/s':>8} {'ack p50':>8} {'ack p99':>8} "
                     f"{'e2e p50':>8} {'e2e p99':>8} {'cpu ms/msg':>10} load")
        for w, r in sc["processes"].items():
            lines.append(f"{w:>5} {r['done']:>6} {r['chart_msgs_per_s']:>8} {r['ratio_vs_1']:>6} {r['ack_msgs_per_s']:>8} "
                         f"{r['ack_p50_ms']:>8} {r['ack_p99_ms']:>8} {r['e2e_p50_ms']:>8} {r['e2e_p99_ms']:>8} "
                         f"{r['engine_cpu_ms_per_msg']:>10} {r['load_avg'][0]:.1f}")
    if "journal" in S:
        j = S["journal"]
        lines.append(f"\n6. journal size: ADT mix ({j['messages_per_run']} msgs, {j['connections']} connections) "
                     "on a pre-seeded journal")
        lines.append(f"{'stored':>9} {'seed s':>7} {'patients':>8} {'chart/s':>8} {'x size0':>7} {'ack p50':>8} "
                     f"{'ack p99':>8} {'p50 x':>6} {'p99 x':>6} {'cpu ms/msg':>10} load")
        for size, row in j["sizes"].items():
            for pool, r in row["pools"].items():
                x = r["ratio_vs_smallest"]
                lines.append(f"{size:>9} {row['seed']['seconds']:>7} {r['patients']:>8} {r['chart_msgs_per_s']:>8} "
                             f"{x['throughput']:>7} {r['ack_p50_ms']:>8} {r['ack_p99_ms']:>8} {x['ack_p50']:>6} "
                             f"{x['ack_p99']:>6} {r['engine_cpu_ms_per_msg']:>10} {r['load_avg'][0]:.1f}")
    if "cross_check" in R:
        x = R["cross_check"]
        lines.append(f"\ncross-check: {Path(x['tool']).name} -c {x['connections']} -n {x['messages']} --synthetic adt_a01")
        for name in ("engine", "python-hl7"):
            r = x[name] or {}
            lines.append(f"   {name:<11} {r.get('msgs_per_s')} msgs/s, ACK p50 {r.get('ack_p50_ms')} ms, "
                         f"p99 {r.get('ack_p99_ms')} ms, ok {r.get('ok')}/{r.get('sent')}")
    lines.append(f"\nengine peak RSS (whole run): {R.get('engine_peak_rss_mb')} MB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="interface bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small counts (well under a minute): a smoke run")
    p.add_argument("--db", help="PostgreSQL server URL: a fresh database is created there and dropped after")
    p.add_argument("--var", help=argparse.SUPPRESS)  # accepted for `interface` symmetry; bench uses a temp dir
    p.add_argument("--scale", type=float, default=1.0, help="multiply every message count (e.g. 0.5, 3)")
    p.add_argument("--connections", default="1,16", help="comma-separated connection counts (default 1,16)")
    p.add_argument("--scenarios", default="receive,adt,mdm,queue",
                   help="comma-separated subset of receive,adt,mdm,queue,scale,journal (receive and adt "
                   "share a run; scale and journal are meant for --db postgresql://...)")
    p.add_argument("--scenario", dest="scenarios", help="alias of --scenarios")
    p.add_argument("--processes", default="1,2,3", help="engine process counts for the scale scenario")
    p.add_argument("--journal-sizes", help="stored messages to seed for the journal scenario "
                   "(default 10000,100000,1000000; --quick 200,1000)")
    p.add_argument("--patients", help="distinct patients per run in the journal scenario "
                   "(default 100,10000; --quick 5,50)")
    p.add_argument("--engine-workers", type=int, default=0,
                   help="passed to `interface run --workers` (default 0: one engine process per core)")
    p.add_argument("--mix", choices=MIXES, default="realistic",
                   help="ADT mix: realistic (admit time, diagnosis and bed kept per visit; default) or churn "
                        "(every message rewrites them: the mix of figures before 2026-11-24)")
    p.add_argument("--json", help="write the results as JSON to this file")
    p.add_argument("--engine-root", help="run the engine from this source tree (e.g. `git archive COMMIT | "
                   "tar -x -C DIR`): before/after figures with the same client and baselines")
    p.add_argument("--no-cross-check", action="store_true", help=f"skip the {LOAD_TOOL.name} cross-check")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (engine log, database)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--baseline-server", nargs=2, metavar=("KIND", "READY"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline_server:
        _serve_baseline(*args.baseline_server)
        return 0
    args.argv = argv
    R = Bench(args).run()
    print(table(R))
    if args.json:
        Path(args.json).write_text(json.dumps(R, indent=2, default=str))
    bad = [c for c, r in R["scenarios"].get("receive", {}).items()
           if r["engine"]["mismatched"] or set(r["engine"]["ack_codes"]) - {"AA", "CA"}]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
