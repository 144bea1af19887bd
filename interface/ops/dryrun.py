"""``interface test --channel NAME MESSAGE...``: what messages would do, writing nothing.

Each message goes through the real path — :class:`~interface.engine.inbound.Engine` decides and builds
the ACK, the channel's destinations run the mapping and the chart / document stores apply the
records — inside **one database transaction that is rolled back at the end**. Nothing is
committed, no content file is written (document content goes to the database store inside the
same transaction) and outbound destinations (MLLP, file) are reported, never called.

By default the database is a throwaway SQLite file in a temporary directory (an empty chart:
messages given together see each other's effects, in order). With ``db_url`` the messages are
tried against a real database's current charts and index, still rolled back.

``NAME`` may list several channels, ``adt,mdm``: each message goes to the first of them that
accepts its type, so a patient's ADT and then their documents can be tried together.

Output: a JSON list, one object per message::

    {"file": ..., "control_id": ..., "message_type": ..., "status": "accepted",
     "ack_code": "AA", "ack": "MSH|...\\rMSA|AA|...",
     "destinations": [{"name": "store", "type": "store", "mapping": "adt",
                       "outcome": "applied", "records": [...], "changes": [...]}]}

A file without an MSH segment is sent whole, as the listener would receive it: its AR (ERR 100,
"no MSH segment found") is in the JSON and said on stderr.

``outcome`` is ``applied``, ``held`` (e.g. a document for an unknown patient: ``reason``,
``error``), ``error`` (``reason``, ``location``, ``error``: what the error queue would show) or
``would_deliver`` for outbound destinations. Exit status 0 when every message was accepted and
every destination applied (or would deliver); 1 otherwise; 2 for a configuration problem.
"""

from __future__ import annotations

import json
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from sqlalchemy import select
from sqlalchemy.engine import Connection

from interface.engine.processing import Pipeline
from interface.hl7.errors import ConfigError, HL7Error, Hold
from interface.mapping import records as rec
from interface.store.schema import messages, work_items


class _Bound:
    """Stands in for a SQLAlchemy engine: every ``begin()`` is a SAVEPOINT on one connection
    whose outer transaction the dry run rolls back."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.dialect = conn.dialect

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        sp = self.conn.begin_nested()
        try:
            yield self.conn
        except BaseException:
            sp.rollback()
            raise
        sp.commit()


class _Recorder:
    """Applies work items like a Worker would, but keeps what each one changed."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.effects: dict[int, dict] = {}

    def unapplied_event(self, ch, trigger: str) -> str | None:
        return self.pipeline.unapplied_event(ch, trigger)

    def process_now(self, conn: Connection, item_ids: list[int], now: datetime) -> dict[int, HL7Error | None]:
        out: dict[int, HL7Error | None] = {}
        rows = conn.execute(
            select(work_items.c.id, work_items.c.message_id, work_items.c.channel, work_items.c.destination)
            .where(work_items.c.id.in_(item_ids))
            .order_by(work_items.c.id)
        ).all()
        for item in rows:
            if item.destination == "quarantine":
                continue
            raw = conn.execute(select(messages.c.raw).where(messages.c.id == item.message_id)).scalar_one()
            effect, err = self._one(conn, item, raw, now)
            self.effects[item.id] = effect
            out[item.id] = err
        return out

    def _one(self, conn: Connection, item, raw: bytes, now: datetime) -> tuple[dict, HL7Error | None]:
        prep = self.pipeline.prepare(item.channel, item.destination, raw)
        effect: dict[str, Any] = {"name": item.destination}
        d = prep.destination
        if d is not None:
            effect["type"] = d.type
            if d.type == "store":
                effect["mapping"] = d.mapping
        if prep.records is not None:
            effect["records"] = rec.to_jsonable(prep.records)
        sp = conn.begin_nested()
        try:
            if prep.error is not None:
                raise prep.error
            if d.type != "store":
                sp.rollback()
                effect["outcome"] = "would_deliver"
                return effect, None
            effect["changes"] = self._apply(conn, item, prep, now)
        except Hold as exc:
            sp.rollback()
            effect.update(outcome="held", reason=exc.reason, error=exc.text)
            return effect, None
        except HL7Error as exc:
            sp.rollback()
            effect.update(
                outcome="error",
                reason=exc.reason,
                error=exc.text,
                location=str(exc.location) if exc.location and exc.location.segment else None,
                code=exc.code,
            )
            return effect, exc
        except Exception as exc:  # the real worker sends these to the error queue as well
            sp.rollback()
            effect.update(
                outcome="error",
                reason="processing_error",
                error=f"unexpected {type(exc).__name__} while applying",
            )
            return effect, HL7Error(effect["error"], reason="processing_error")
        sp.commit()
        effect["outcome"] = "applied"
        return effect, None

    def _apply(self, conn: Connection, item, prep, now: datetime) -> list[dict]:
        return self.pipeline.apply_store(conn, item, prep, now)  # the identity check included


def _pipeline(channels_dir: Path, mappings_dir: Path, rules_file: Path | None) -> tuple[Pipeline, list]:
    from interface.config.channels import load_channels
    from interface.mapping.loader import load_mappings
    from interface.store import documents

    channels = load_channels(channels_dir)
    mappings = load_mappings(mappings_dir)
    rules = None
    if rules_file is not None and rules_file.exists():
        from interface.rules.completeness import load_rules

        rules = load_rules(rules_file)
    # content_dir None: content goes to the database store, inside the rolled-back transaction
    settings = documents.DocumentSettings(content_dir=None, rules=rules)
    identity_rules = None  # as interface run: rules/identity.yaml beside the completeness rules
    if rules_file is not None:
        from interface.rules import identity

        path = rules_file.parent / "identity.yaml"
        identity_rules = identity.load_rules(path) if path.exists() else identity.DEFAULT_RULES
    return Pipeline(channels, mappings, document_settings=settings, identity_rules=identity_rules), channels


def _route(channels: list, raw: bytes):
    """The first channel that accepts the message's type (the first channel if none does, so
    that its refusal is what the dry run shows)."""
    if len(channels) == 1:
        return channels[0]
    from interface.hl7.errors import ParseError
    from interface.hl7.message import decode, header_from_text

    try:
        header = header_from_text(decode(raw).text)
    except ParseError:
        return channels[0]
    return next((c for c in channels if c.accepts(header.message_code, header.trigger)), channels[0])


def try_messages(
    conn: Connection, pipeline: Pipeline, channels: list, inputs: list[tuple[str, bytes]], now: datetime
) -> list[dict]:
    """Receive and apply each (label, raw) in order on ``conn`` (the caller rolls back), each
    on the first of ``channels`` that accepts its type."""
    from interface.engine.inbound import Engine

    recorder = _Recorder(pipeline)
    engine = Engine(_Bound(conn), clock=lambda: now, processor=recorder)
    results = []
    for label, raw in inputs:
        channel = _route(channels, raw)
        outcome = engine.receive(channel, raw, peer="dry-run")
        entry: dict[str, Any] = {
            "file": label,
            "channel": channel.name,
            "control_id": outcome.control_id,
            "message_type": outcome.message_type,
            "status": outcome.status,
            "ack_code": outcome.ack_code,
            "ack": outcome.ack.decode("utf-8", "replace") if outcome.ack else None,
        }
        if outcome.text and outcome.status not in ("accepted", "processed"):
            entry["error"] = outcome.text
        dests = []
        if outcome.message_id is not None and outcome.status in ("accepted", "processed", "error"):
            ids = [
                r.id
                for r in conn.execute(
                    select(work_items.c.id)
                    .where(work_items.c.message_id == outcome.message_id)
                    .order_by(work_items.c.id)
                )
            ]
            pending = [i for i in ids if i not in recorder.effects]
            if pending:  # ack on_commit: the engine did not apply them; do it as a worker would
                recorder.process_now(conn, pending, now)
            dests = [recorder.effects[i] for i in ids if i in recorder.effects]
        entry["destinations"] = dests
        results.append(entry)
    return results


def _ok(result: dict) -> bool:
    if result["status"] not in ("accepted", "processed", "duplicate"):
        return False
    return all(d.get("outcome") in ("applied", "would_deliver") for d in result["destinations"])


@contextmanager
def _database(db_url: str | None) -> Iterator[Any]:
    from interface.store import db

    if db_url:
        eng = db.make_engine(db_url, pool_size=1)
        try:
            yield eng
        finally:
            eng.dispose()
        return
    with tempfile.TemporaryDirectory(prefix="interface-dryrun-") as tmp:
        eng = db.make_engine(f"sqlite:///{Path(tmp) / 'dryrun.db'}", pool_size=1)
        try:
            db.create_schema(eng)
            yield eng
        finally:
            eng.dispose()


def dry_run(
    channel_name: str,
    files: list[str],
    *,
    channels_dir: Path = Path("channels"),
    mappings_dir: Path = Path("mappings"),
    rules_file: Path | None = Path("rules/completeness.yaml"),
    db_url: str | None = None,
    clock: Callable[[], datetime] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print, as JSON, the ACK and the changes each message in ``files`` would make on channel
    ``channel_name``; commit nothing. Returns the exit status (see the module docstring)."""
    from interface.engine.client import messages_in_file
    from interface.hl7.errors import ParseError

    out = out or sys.stdout
    err = err or sys.stderr
    if not files:
        print("give at least one message file", file=err)
        return 2
    try:
        pipeline, channels = _pipeline(Path(channels_dir), Path(mappings_dir), rules_file)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=err)
        return 2
    by_name = {c.name: c for c in channels}
    chosen = []
    for name in (n.strip() for n in channel_name.split(",")):
        if name not in by_name:
            names = ", ".join(sorted(by_name)) or "none"
            print(f"no channel named {name!r} in {channels_dir} (channels: {names})", file=err)
            return 2
        chosen.append(by_name[name])
    inputs: list[tuple[str, bytes]] = []
    unreadable: set[str] = set()  # files without a message the engine can read: sent whole
    for f in files:
        try:
            msgs = messages_in_file(f)
        except OSError as exc:
            print(f"{f}: cannot read: {exc.strerror or exc}", file=err)
            return 2
        except ParseError:  # no MSH: the listener would answer it, and so does the dry run
            msgs = [Path(f).read_bytes().replace(b"\x0b", b"").replace(b"\x1c", b"")]
            if not msgs[0].strip(b"\r\n\t \x00"):
                msgs = []
            else:
                unreadable.add(f)
        if not msgs:
            print(f"{f}: no message in the file", file=err)
            return 2
        inputs.extend((f if len(msgs) == 1 else f"{f}#{i + 1}", m) for i, m in enumerate(msgs))
    now = (clock or (lambda: datetime.now(timezone.utc)))()
    with _database(db_url) as eng:
        with eng.connect() as conn:
            trans = conn.begin()
            try:
                results = try_messages(conn, pipeline, chosen, inputs, now)
            finally:
                trans.rollback()
    out.write(json.dumps(results, indent=1, default=str, ensure_ascii=False) + "\n")
    for r in results:  # what the listener answers, said plainly (the ACK is in the JSON)
        if r["file"] in unreadable:
            print(
                f"{r['file']}: {r['ack_code'] or 'not accepted'}: {r.get('error') or r['status']}", file=err
            )
    return 0 if all(_ok(r) for r in results) else 1
