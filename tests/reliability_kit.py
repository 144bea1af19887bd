"""Harness for the reliability tests (RELIABILITY.md R1-R6; docs/reliability.md).

* :class:`EngineProcess` runs the real engine (``interface run --no-web``) as a subprocess on
  port 0, learns its ports from ``--ready-file``, SIGKILLs and restarts it, reads its RSS.
* :func:`adt_message` / :func:`mdm_message` build messages that carry a per-patient sequence
  number where the database records it: PID-5.2 (given name ``S000042``) lands in the chart and
  in ``chart_history`` (one given-name change per applied ADT message, old -> new: a ``set given``
  row, or for the message that creates the patient the ``given`` of its ``initial`` entry); each MDM is a
  new document ``D<mrn>-<seq>`` (one ``document_versions`` row per applied MDM message).
* :class:`Sender` (a thread, one MLLP connection per channel) delivers a script of messages in
  order, resending each until it gets a final ACK (after a dropped connection, a timeout, or an
  AE); every ACK frame received is kept with the message it answers.
* :func:`check_history` reads the database after a run and lists every broken promise: an ACKed
  message missing from the journal, stored twice, an ACK that differs from the stored one, an
  effect applied twice or never, a patient whose apply order differs from the send order, an
  undrained queue.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select as _select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from interface.engine.client import MLLPClient, parse_ack
from interface.hl7.framing import FrameDecoder, frame

ROOT = Path(__file__).resolve().parent.parent
OK_CODES = ("AA", "CA")
FINAL_REJECT = ("AR", "CR")
BASE_TIME = datetime(2026, 1, 1, 8, 0, 0)


def interface_bin() -> str:
    here = Path(sys.executable).parent / "interface"
    return str(here if here.exists() else ROOT / ".venv" / "bin" / "interface")


# ---------------------------------------------------------------------------------------------
# messages


def _ts(seq: int) -> str:
    return (BASE_TIME + timedelta(minutes=seq)).strftime("%Y%m%d%H%M%S")


def mrn_of(patient: int, tag: str = "R") -> str:
    return f"{tag}{patient:06d}"


def given_of(seq: int) -> str:
    return f"S{seq:06d}"


ADT_STRUCTURES = {"A01": "ADT_A01", "A04": "ADT_A01", "A08": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03"}
ADT_CLASS = {"A01": "I", "A02": "I", "A03": "I", "A04": "O", "A08": "I"}


def adt_message(
    mrn: str,
    seq: int,
    event: str,
    control_id: str,
    *,
    birth_date: str = "19700101",
    pad: int = 0,
    sender: str = "RELSEND",
) -> bytes:
    """An ADT message for patient ``mrn`` carrying sequence number ``seq`` in PID-5.2 and MSH-7."""
    ts = _ts(seq)
    pv1 = ["PV1", "1", ADT_CLASS[event], f"W{seq % 7}^{seq % 30}^A^HOSP"] + [""] * 16
    pv1[19] = f"V{mrn}^^^HOSP^VN"
    segs = [
        f"MSH|^~\\&|{sender}|HOSP|INTERFACE|HOSP|{ts}||ADT^{event}^{ADT_STRUCTURES[event]}|"
        f"{control_id}|P|2.5.1",
        f"EVN|{event}|{ts}",
        f"PID|1||{mrn}^^^HOSP^MR||REL^{given_of(seq)}^^^^^L||{birth_date}|F",
        "|".join(pv1),
    ]
    if pad:
        segs.append("NTE|1||" + "X" * pad)
    return ("\r".join(segs) + "\r").encode()


def mdm_message(mrn: str, seq: int, control_id: str, *, sender: str = "RELDOCS") -> bytes:
    """An MDM^T02 (new document with content) ``D<mrn>-<seq>`` for patient ``mrn``."""
    ts = _ts(seq)
    segs = [
        f"MSH|^~\\&|{sender}|HOSP|INTERFACE|HOSP|{ts}||MDM^T02^MDM_T02|{control_id}|P|2.5.1",
        f"EVN|T02|{ts}",
        f"PID|1||{mrn}^^^HOSP^MR||REL^{given_of(seq)}^^^^^L||19700101|F",
        f"TXA|1|CN^Consultation^HL70270|TX|{ts}||{ts}|{ts}||||T900^WRIGHT^PAT|"
        f"D{mrn}-{seq}^{sender}|||||AU|U|AV|AC",
        f"OBX|1|TX|CN^Consultation^HL70270||Reliability note {seq}",
    ]
    return ("\r".join(segs) + "\r").encode()


@dataclass(eq=False)
class Sent:
    """One message a sender owns, and everything that happened to it on the wire."""

    channel: str
    patient: int
    mrn: str
    seq: int
    control_id: str
    body: bytes
    kind: str  # adt | mdm
    acks: list[bytes] = field(default_factory=list)  # every ACK frame received for it
    transmissions: int = 0
    lost: int = 0  # transmissions answered by a dropped connection / timeout
    gave_up: bool = False
    latencies: list[float] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def codes(self) -> list[str]:
        return [parse_ack(a)[0] for a in self.acks]

    def ok_acks(self) -> list[bytes]:
        """ACKs that promise durability: MSA-1 AA/CA and MSA-2 == our MSH-10."""
        out = []
        for a in self.acks:
            code, ctl, _ = parse_ack(a)
            if code in OK_CODES and ctl == self.control_id:
                out.append(a)
        return out

    @property
    def acked(self) -> bool:
        return bool(self.ok_acks())


def patient_script(
    patient: int,
    n: int,
    rng: random.Random,
    *,
    tag: str = "R",
    mdm_share: float = 0.0,
    events=("A08", "A02", "A01", "A08", "A03"),
) -> list[Sent]:
    """``n`` messages for one patient: an A04 first, then ADT events (and MDM documents)."""
    mrn = mrn_of(patient, tag)
    out = []
    for seq in range(1, n + 1):
        ctl = f"{tag}{patient:05d}.{seq:05d}"
        if seq > 1 and rng.random() < mdm_share:
            out.append(Sent("mdm", patient, mrn, seq, ctl, mdm_message(mrn, seq, ctl), "mdm"))
            continue
        event = "A04" if seq == 1 else rng.choice(events)
        out.append(Sent("adt", patient, mrn, seq, ctl, adt_message(mrn, seq, event, ctl), "adt"))
    return out


def interleave(scripts: list[list[Sent]], rng: random.Random) -> list[Sent]:
    """Merge per-patient scripts into one send order that keeps each patient's order."""
    pos = [0] * len(scripts)
    live = [i for i, s in enumerate(scripts) if s]
    out = []
    while live:
        i = rng.choice(live)
        out.append(scripts[i][pos[i]])
        pos[i] += 1
        if pos[i] == len(scripts[i]):
            live.remove(i)
    return out


def build_workload(
    patients: int, per_patient: int, senders: int, seed: int, *, tag: str = "R", mdm_share: float = 0.0
) -> list[list[Sent]]:
    """One script per sender; patient p belongs to sender p % senders (so "send order" per
    patient is well defined: one connection, one message in flight)."""
    rng = random.Random(seed)
    scripts = [patient_script(p, per_patient, rng, tag=tag, mdm_share=mdm_share) for p in range(patients)]
    return [interleave([s for p, s in enumerate(scripts) if p % senders == k], rng) for k in range(senders)]


# ---------------------------------------------------------------------------------------------
# the engine as a subprocess


class EngineProcess:
    """``interface run --no-web`` on port 0 in a subprocess; restartable; SIGKILLable.
    ``workers``: ``--workers N`` (a supervisor and N engine processes, killed all at once)."""

    def __init__(
        self,
        workdir: Path,
        db_url: str | None = None,
        *,
        channels=("adt", "mdm", "siu"),
        start_timeout: float = 90.0,
        workers: int = 1,
    ):
        self.workers = workers
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url
        self.channels = channels
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.up = threading.Event()
        self.starts = 0
        self.kills = 0
        self.log_path = self.workdir / "engine.log"

    def start(self, faults: str | None = None) -> dict[str, int]:
        ready = self.workdir / "ready.json"
        ready.unlink(missing_ok=True)
        cmd = [
            interface_bin(),
            "run",
            "--var",
            str(self.workdir / "var"),
            "--no-web",
            "--channels",
            str(ROOT / "channels"),
            "--mappings",
            str(ROOT / "mappings"),
            "--ready-file",
            str(ready),
        ]
        for ch in self.channels:
            cmd += ["--listen", f"{ch}=tcp:0:interface=127.0.0.1"]
        if self.db_url:
            cmd += ["--db", self.db_url]
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        env = {k: v for k, v in os.environ.items() if k not in ("INTERFACE_FAULT", "INTERFACE_DB_URL")}
        if faults:
            env["INTERFACE_FAULT"] = faults
        log = open(self.log_path, "ab")
        log.write(f"--- start {self.starts + 1} faults={faults!r}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while not ready.exists():  # a real subprocess: poll with a deadline
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"engine not ready after {self.start_timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)
        doc = json.loads(ready.read_text())
        self.ports = {k: int(v) for k, v in doc["ports"].items()}
        self.starts += 1
        self.up.set()
        return self.ports

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a power cut for the process."""
        self.up.clear()
        if self.proc is not None and self.proc.poll() is None:
            if self.workers != 1:  # the supervisor and every engine process at the same instant
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self) -> None:
        self.up.clear()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def wait_exit(self, timeout: float = 30.0) -> int:
        rc = self.proc.wait(timeout)
        self.up.clear()
        return rc

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        """Resident set size of the engine process (0 if it is gone)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (FileNotFoundError, ProcessLookupError):
            return 0
        return 0

    def log_count(self, *needles: str) -> int:
        """How many engine log lines contain every one of ``needles`` (``outcome=duplicate``)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return 0
        return sum(all(n in line for n in needles) for line in lines)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# senders


class Sender(threading.Thread):
    """Delivers its script in order over one connection per channel: each message is resent
    (reconnecting as needed) until a final ACK: AA/CA with our control id, or AR/CR. AE/CE and
    dropped connections mean "not stored": resend."""

    def __init__(
        self,
        engine: EngineProcess,
        script: list[Sent],
        *,
        ack_timeout: float = 30.0,
        give_up_after: float = 180.0,
        progress=None,
        stop: threading.Event | None = None,
        name: str = "sender",
    ):
        super().__init__(name=name, daemon=True)
        self.engine = engine
        self.script = script
        self.ack_timeout = ack_timeout
        self.give_up_after = give_up_after
        self.progress = progress
        self.stop_event = stop or threading.Event()
        self.clients: dict[str, MLLPClient] = {}
        self.error: BaseException | None = None
        self.reconnects = 0

    def run(self) -> None:
        try:
            for m in self.script:
                if self.stop_event.is_set():
                    return
                self.deliver(m)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            for c in self.clients.values():
                c.close()

    def _client(self, channel: str) -> MLLPClient:
        c = self.clients.get(channel)
        if c is None:
            c = MLLPClient("127.0.0.1", self.engine.ports[channel], timeout=self.ack_timeout)
            c.connect()
            self.clients[channel] = c
            self.reconnects += 1
        return c

    def _drop(self, channel: str) -> None:
        c = self.clients.pop(channel, None)
        if c is not None:
            c.close()

    def deliver(self, m: Sent) -> None:
        deadline = time.monotonic() + self.give_up_after
        while not self.stop_event.is_set():
            if time.monotonic() > deadline:
                m.gave_up = True
                return
            if not self.engine.up.wait(0.5):
                continue
            try:
                c = self._client(m.channel)
            except OSError:
                self.stop_event.wait(0.02)  # engine restarting: its port is not open yet
                continue
            m.transmissions += 1
            t0 = time.monotonic()
            res = c.send(m.body)
            if res.code == "--":
                m.lost += 1
                self._drop(m.channel)
                continue
            m.latencies.append(time.monotonic() - t0)
            m.acks.append(res.raw)
            code, ctl, _ = parse_ack(res.raw)
            if code in OK_CODES and ctl == m.control_id:
                if self.progress is not None:
                    self.progress()
                return
            if code in FINAL_REJECT:
                return
            self.stop_event.wait(0.05)  # AE/CE: not stored; resend shortly


class Progress:
    """A thread-safe count of ACKed messages the test can wait on."""

    def __init__(self):
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout)


def run_senders(
    engine: EngineProcess, scripts: list[list[Sent]], progress: Progress | None = None, **kw
) -> list[Sender]:
    senders = [Sender(engine, s, progress=progress, name=f"sender-{i}", **kw) for i, s in enumerate(scripts)]
    for s in senders:
        s.start()
    return senders


def stop_senders(senders: list[Sender]) -> None:
    """On the way out of a test (passed or failed): no sender outlives it."""
    for s in senders:
        s.stop_event.set()
    for s in senders:
        s.join(5)


def join_senders(senders: list[Sender], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for s in senders:
        s.join(max(0.0, deadline - time.monotonic()))
    stuck = [s.name for s in senders if s.is_alive()]
    if stuck:
        for s in senders:
            s.stop_event.set()
        raise AssertionError(f"senders still running after {timeout}s: {stuck}")
    errors = [f"{s.name}: {s.error!r}" for s in senders if s.error is not None]
    if errors:
        raise AssertionError("sender failed: " + "; ".join(errors))


class FloodSender(threading.Thread):
    """Sends frames flat out on one connection without waiting for ACKs (MLLP pipelining) for
    ``duration`` seconds (at most ``limit`` messages, made by ``make(i)``), while a reader thread
    collects the ACKs; the engine must slow it down by not reading its socket (R6)."""

    def __init__(
        self, port: int, make, *, limit: int, duration: float, timeout: float = 120.0, sndbuf: int = 65536
    ):
        super().__init__(daemon=True)
        self.port, self.make, self.limit = port, make, limit
        self.duration, self.timeout, self.sndbuf = duration, timeout, sndbuf
        self.sent_at: dict[str, float] = {}
        self.sent: list[Sent] = []
        self.by_ctl: dict[str, Sent] = {}
        self.error: BaseException | None = None
        self.bytes_sent = 0
        self.acks = 0
        self._sending_done = threading.Event()

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        except OSError as exc:
            self.error = exc
            return
        reader = threading.Thread(target=self._read, args=(sock,), daemon=True)
        reader.start()
        try:
            end = time.monotonic() + self.duration
            for i in range(self.limit):
                if time.monotonic() > end:
                    break
                m = self.make(i)
                data = frame(m.body)
                self.by_ctl[m.control_id] = m
                self.sent_at[m.control_id] = time.monotonic()
                m.transmissions += 1
                self.sent.append(m)
                sock.sendall(data)
                self.bytes_sent += len(data)
            self._sending_done.set()
            reader.join(self.timeout)
            if reader.is_alive() or self.acks < len(self.sent):
                self.error = TimeoutError(f"{self.acks} ACKs for {len(self.sent)} frames sent")
        except BaseException as exc:
            self.error = exc
        finally:
            self._sending_done.set()
            sock.close()

    def _read(self, sock) -> None:
        dec = FrameDecoder()
        deadline = time.monotonic() + self.duration + self.timeout
        try:
            while not (self._sending_done.is_set() and self.acks >= len(self.sent)):
                if time.monotonic() > deadline:
                    return
                if not _select.select([sock], [], [], 0.2)[0]:
                    continue
                data = sock.recv(65536)
                if not data:
                    return
                for f in dec.feed(data):
                    _, ctl, _ = parse_ack(f)
                    m = self.by_ctl.get(ctl)
                    if m is not None:
                        m.acks.append(f)
                        m.latencies.append(time.monotonic() - self.sent_at[ctl])
                    self.acks += 1
        except (OSError, ValueError):  # the socket was closed under us: the test reports it
            return


# ---------------------------------------------------------------------------------------------
# the database side


def table_counts(db) -> dict[str, int]:
    from interface.store.schema import messages, work_items

    with db.connect() as conn:
        items = dict(
            conn.execute(select(work_items.c.status, func.count()).group_by(work_items.c.status)).all()
        )
        msgs = conn.execute(select(func.count()).select_from(messages)).scalar()
    return {"messages": msgs, **{f"items_{k}": v for k, v in items.items()}}


def wait_drained(db, timeout: float = 120.0) -> dict[str, int]:
    """Poll (the engine is a real subprocess) until no work item is pending or held."""
    deadline = time.monotonic() + timeout
    while True:
        counts = table_counts(db)
        if not counts.get("items_pending") and not counts.get("items_held"):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"queue not drained after {timeout}s: {counts}")
        time.sleep(0.2)


@dataclass
class Report:
    violations: list[str]
    figures: dict

    def __str__(self) -> str:
        head = ", ".join(f"{k}={v}" for k, v in self.figures.items())
        more = "" if len(self.violations) <= 30 else f"\n... and {len(self.violations) - 30} more"
        return head + "".join("\n  " + v for v in self.violations[:30]) + more


@dataclass
class _GivenChange:
    id: int
    mrn: str
    message_id: int
    old_value: str | None
    new_value: str | None


def given_changes(rows) -> list[_GivenChange]:
    """The given-name changes in ``chart_history``: ``set given`` rows, and the ``given`` of the
    ``initial`` entry a new patient row gets (its first values, old value none)."""
    out = []
    for r in rows:
        if r.action == "initial":
            first = json.loads(r.new_value or "{}")
            if "given" in first:
                out.append(_GivenChange(r.id, r.mrn, r.message_id, None, first["given"]))
        else:
            out.append(_GivenChange(r.id, r.mrn, r.message_id, r.old_value, r.new_value))
    return out


def check_history(db, sent: list[Sent], *, expect_error_items: int = 0, drained: bool = True) -> Report:
    """Every promise of RELIABILITY.md that the database can show, for the messages in ``sent``
    (a Sent may appear several times: resends of the same object count once)."""
    from interface.store.chart_schema import chart_history
    from interface.store.document_schema import document_versions
    from interface.store.schema import messages, work_attempts, work_items

    uniq: list[Sent] = list(dict.fromkeys(sent))
    v: list[str] = []
    with db.connect() as conn:
        rows = conn.execute(
            select(
                messages.c.id,
                messages.c.channel,
                messages.c.control_id,
                messages.c.body_sha256,
                messages.c.status,
                messages.c.ack,
                messages.c.sending_application,
            )
        ).all()
        items = conn.execute(
            select(
                work_items.c.id,
                work_items.c.message_id,
                work_items.c.status,
                work_items.c.key,
                work_items.c.destination,
            )
        ).all()
        done = conn.execute(
            select(work_attempts.c.item_id, work_attempts.c.id).where(work_attempts.c.outcome == "done")
        ).all()
        given = given_changes(
            conn.execute(
                select(
                    chart_history.c.id,
                    chart_history.c.mrn,
                    chart_history.c.message_id,
                    chart_history.c.field,
                    chart_history.c.action,
                    chart_history.c.old_value,
                    chart_history.c.new_value,
                )
                .where(
                    chart_history.c.table_name == "patients",
                    (chart_history.c.field == "given") | (chart_history.c.action == "initial"),
                )
                .order_by(chart_history.c.id)
            ).all()
        )
        versions = conn.execute(
            select(document_versions.c.message_id, document_versions.c.document_number)
        ).all()
    by_ctl: dict[tuple, list] = defaultdict(list)
    for r in rows:
        by_ctl[(r.channel, r.control_id)].append(r)
    items_by_msg: dict[int, list] = defaultdict(list)
    for it in items:
        items_by_msg[it.message_id].append(it)
    done_by_item: dict[int, list[int]] = defaultdict(list)
    for item_id, aid in done:
        done_by_item[item_id].append(aid)
    given_by_msg: dict[int, list] = defaultdict(list)
    for g in given:
        given_by_msg[g.message_id].append(g)
    versions_by_msg = Counter(mid for mid, _ in versions)

    stored_id: dict[int, int] = {}  # id(Sent) -> journal id
    acked = resent = dup_answers = 0
    for m in uniq:
        mine = [
            r
            for r in by_ctl.get((m.channel, m.control_id), [])
            if r.body_sha256 == m.sha and r.status not in ("quarantined", "rejected")
        ]
        ok = m.ok_acks()
        acked += bool(ok)
        resent += m.transmissions > 1
        dup_answers += max(0, len(ok) - 1)
        if len(mine) > 1:
            v.append(f"{m.control_id}: stored {len(mine)} times")
        if not mine:
            if ok:
                v.append(f"{m.control_id}: ACKed {parse_ack(ok[0])[0]} but not in the journal")
            continue
        row = mine[0]
        stored_id[id(m)] = row.id
        for a in ok:
            if a != row.ack:
                v.append(f"{m.control_id}: an ACK received differs from the stored ACK")
                break
        its = items_by_msg.get(row.id, [])
        if len(its) != 1:
            v.append(f"{m.control_id}: {len(its)} work items")
            continue
        it = its[0]
        if drained and it.status != "done":
            v.append(f"{m.control_id}: work item {it.status}")
        n_done = len(done_by_item.get(it.id, []))
        if n_done > 1:
            v.append(f"{m.control_id}: work item done {n_done} times")
        if m.kind == "adt":
            g = given_by_msg.get(row.id, [])
            if it.status == "done" and len(g) != 1:
                v.append(f"{m.control_id}: {len(g)} chart changes of the given name (expected 1)")
            if g and g[0].new_value != given_of(m.seq):
                v.append(f"{m.control_id}: chart given name set to {g[0].new_value}")
        else:
            n = versions_by_msg.get(row.id, 0)
            if it.status == "done" and n != 1:
                v.append(f"{m.control_id}: {n} document versions (expected 1)")

    # Per-patient order: the order items were applied (done attempt ids) and, for ADT, the chain
    # of given-name changes in chart_history must both be the send order.
    by_patient: dict[str, list[Sent]] = defaultdict(list)
    for m in uniq:
        if id(m) in stored_id:
            by_patient[m.mrn].append(m)
    item_of_msg = {it.message_id: it for it in items}
    given_by_mrn: dict[str, list] = defaultdict(list)
    for g in given:
        given_by_mrn[g.mrn].append(g)
    longest = 0
    for mrn, ms in by_patient.items():
        ms.sort(key=lambda m: m.seq)  # scripts number each patient's messages in send order
        longest = max(longest, len(ms))
        applied = []
        for m in ms:
            it = item_of_msg.get(stored_id[id(m)])
            if it is not None and done_by_item.get(it.id):
                applied.append((min(done_by_item[it.id]), m.seq))
        order = [s for _, s in sorted(applied)]
        if order != sorted(order):
            v.append(
                f"patient {mrn}: applied in order {order[:20]}..., sent in order {sorted(order)[:20]}..."
            )
        chain = given_by_mrn.get(mrn, [])
        seqs = [int(g.new_value[1:]) for g in chain if g.new_value and g.new_value.startswith("S")]
        want = [
            m.seq
            for m in ms
            if m.kind == "adt" and done_by_item.get(getattr(item_of_msg.get(stored_id[id(m)]), "id", -1))
        ]
        if seqs != want:
            v.append(
                f"patient {mrn}: chart history given-name sequence {seqs[:12]}... != sent {want[:12]}..."
            )
        prev = None
        for g in chain:
            if g.old_value != prev:
                v.append(f"patient {mrn}: history row {g.id} changes {g.old_value} but the chart held {prev}")
                break
            prev = g.new_value

    statuses = Counter(it.status for it in items)
    if drained and (statuses.get("pending") or statuses.get("held")):
        v.append(f"queue not drained: {dict(statuses)}")
    if statuses.get("error", 0) != expect_error_items:
        v.append(f"{statuses.get('error', 0)} error items (expected {expect_error_items})")
    stored_rows = [r for r in rows if r.status not in ("quarantined", "rejected")]
    if len(stored_rows) != len(stored_id):
        v.append(f"{len(stored_rows)} journal rows for {len(stored_id)} distinct stored messages")
    figures = dict(
        messages=len(uniq),
        transmissions=sum(m.transmissions for m in uniq),
        resent=resent,
        lost_in_flight=sum(m.lost for m in uniq),
        acked=acked,
        duplicate_acks=dup_answers,
        journal_rows=len(rows),
        items_done=statuses.get("done", 0),
        patients=len(by_patient),
        longest_patient_run=longest,
        gave_up=sum(m.gave_up for m in uniq),
    )
    return Report(v, figures)
