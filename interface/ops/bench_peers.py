"""The benchmark's peers: an MLLP client, baseline servers, process figures."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from interface.ops.bench_workload import EB, ROOT, SB


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
    return (
        f[1].decode("ascii", "replace") if len(f) > 1 else "??",
        f[2].decode("ascii", "replace").strip("\x1c\x0d") if len(f) > 2 else "",
    )


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
                        frame_, self.buf = self.buf[1:end], self.buf[end + 2 :]
                        cid = frame_.split(b"\r", 1)[0].split(b"|")[9]
                        self.t.write(
                            SB
                            + b"MSH|^~\\&|ECHO|ECHO|||20240101000000||ACK|"
                            + cid
                            + b"|P|2.5.1\rMSA|AA|"
                            + cid
                            + b"\r"
                            + EB
                        )

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


def process_memory(pid: int) -> list[dict]:
    """Each process of the tree: pid, its command's last words, VmHWM, VmRSS and PSS in MiB."""
    out = []
    for p in _tree(pid):
        row: dict = {"pid": p}
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                row["cmd"] = " ".join(a.decode(errors="replace") for a in f.read().split(b"\0")[:6])[-80:]
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(("VmHWM:", "VmRSS:")):
                        row[line[:5].lower()] = round(int(line.split()[1]) / 1024, 1)
            row["pss"] = round(_rollup(p).get("Pss", 0) / 1024, 1)
        except OSError:
            continue
        out.append(row)
    return out


def _rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, rest = line.partition(":")
                if k in ("Rss", "Pss"):
                    out[k] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


class MemorySampler:
    """The engine's memory as the machine sees it: every ``interval`` seconds, the RSS and the PSS
    (``/proc/PID/smaps_rollup``: a shared library page counted once across the processes that
    map it) summed over the engine's process tree; the peaks of those sums. The sum of every
    process's own VmHWM (``peak_rss_mb``) is an upper bound: each process's peak counted as if
    they coincided, shared pages once per process. ``pid_of`` is asked each time (the bench
    restarts the engine)."""

    def __init__(self, pid_of: Callable[[], int | None], interval: float = 0.1):
        self.pid_of = pid_of
        self.interval = interval
        self.peak_rss = 0.0
        self.peak_pss = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            pid = self.pid_of()
            if pid is None:
                continue
            rss = pss = 0
            for p in _tree(pid):
                r = _rollup(p)
                rss += r.get("Rss", 0)
                pss += r.get("Pss", 0)
            self.peak_rss = max(self.peak_rss, rss / 1024)
            self.peak_pss = max(self.peak_pss, pss / 1024)
            self.samples += 1

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        return {
            "peak_rss_sum_mb": round(self.peak_rss, 1),
            "peak_pss_sum_mb": round(self.peak_pss, 1),
            "samples": self.samples,
            "interval_s": self.interval,
        }


def pin(pids: list[int], cpus: set[int]) -> list[int]:
    """``sched_setaffinity`` for each pid (``taskset -p``); returns those pinned."""
    done = []
    for p in pids:
        try:
            os.sched_setaffinity(p, cpus)
            done.append(p)
        except OSError:
            pass
    return done


def reset_peak_rss(pid: int) -> None:
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass


# -- the database side ------------------------------------------------------------------------------
