"""Frames over real loopback MLLP (``interface run`` as a subprocess): a multi-message frame gets
one ACK frame per message, and one poisoned frame among many senders' frames costs only itself."""

from __future__ import annotations

import threading

from interface.engine.client import MLLPClient, parse_ack

from .test_destinations import adt
from .test_loopback import EngineProcess, shared_db, stored  # noqa: F401  (shared_db: fixture)


def test_multi_message_frame_and_poisoned_frame_over_loopback(shared_db, tmp_path, monkeypatch):  # noqa: F811
    """Six connections send ten messages each at once while one frame (MSH-10 BAD) makes the
    engine's reader raise (INTERFACE_FAULT poison_control_id): the 59 others are AA, BAD is AE
    with MSA-2 BAD and kept raw; then a frame holding two messages is answered with two ACK
    frames, in order, each message stored and resent as duplicates byte for byte."""
    url, db = shared_db
    monkeypatch.setenv("INTERFACE_FAULT", "poison_control_id=BAD")
    results: dict[str, tuple[str, str]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    with EngineProcess(tmp_path, url) as p:
        port = p.ports["adt"]

        def sender(s: int) -> None:
            try:
                with MLLPClient("127.0.0.1", port, timeout=30) as c:
                    for i in range(10):
                        cid = "BAD" if (s, i) == (3, 4) else f"LB{s}-{i}"
                        r = c.send(adt(cid, f"LBM{s}", "A08"))
                        with lock:
                            results[cid] = (r.code, parse_ack(r.raw)[1] if r.raw else "")
            except BaseException as exc:  # reported below, never lost in a thread
                errors.append(exc)

        threads = [threading.Thread(target=sender, args=(s,)) for s in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and not any(t.is_alive() for t in threads)
        assert results.pop("BAD") == ("AE", "BAD")
        assert len(results) == 59 and {code for code, _ in results.values()} == {"AA"}
        assert all(ctl == cid for cid, (_, ctl) in results.items())
        [bad] = stored(db, "BAD")
        assert bad["status"] == "rejected" and bad["raw"] == adt("BAD", "LBM3", "A08")
        assert len(stored(db, *results)) == 59

        frame = adt("LS1", "LSM1", "A01") + adt("LS2", "LSM2", "A01")
        with MLLPClient("127.0.0.1", port, timeout=30) as c:
            first = c.send_frame(frame)
            assert [(r.control_id, r.code, parse_ack(r.raw)[1]) for r in first] == [
                ("LS1", "AA", "LS1"),
                ("LS2", "AA", "LS2"),
            ]
            again = c.send_frame(frame)
            assert [r.raw for r in again] == [r.raw for r in first]
            assert c.send(adt("LS3", "LSM3", "A01")).code == "AA"  # the connection stays in step
        rows = stored(db, "LS1", "LS2")
        assert [(r["control_id"], r["raw"]) for r in rows] == [
            ("LS1", adt("LS1", "LSM1", "A01")),
            ("LS2", adt("LS2", "LSM2", "A01")),
        ]
