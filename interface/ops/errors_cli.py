"""``interface errors``: the error queue from the command line (list, show, retry, discard,
resubmit, bulk actions, reprocess; the identity desk's commands: :mod:`interface.ops.identity_cli`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from interface.hl7.errors import ConfigError
from interface.ops.cli_args import engine as _engine
from interface.ops.cli_args import now as _now


def cmd_errors(args) -> int:
    from sqlalchemy import select

    from interface.desk import errorqueue
    from interface.ops import audit_cli
    from interface.rules import words
    from interface.store import workqueue
    from interface.store.schema import messages, work_attempts, work_items

    eng = _engine(args)
    args.id = args.ids[0] if args.ids else None
    if args.action in ("retry", "discard") and (args.all or len(args.ids) > 1):
        return _errors_bulk(args, eng)
    if args.action == "reprocess":
        return _errors_reprocess(args, eng)
    if args.action in ("file", "file-anyway", "send-back", "candidates"):
        from interface.ops.identity_cli import errors_identity

        return errors_identity(args, eng, _now())
    if args.action == "list":
        q = (
            select(work_items)
            .where(work_items.c.status.in_(args.status.split(",")))
            .order_by(work_items.c.id)
        )
        if args.channel:
            q = q.where(work_items.c.channel == args.channel)
        if args.reason:
            q = q.where(work_items.c.reason == args.reason)
        if args.destination:
            q = q.where(work_items.c.destination == args.destination)
        with eng.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q.limit(args.limit))]
            behind = workqueue.waiting_behind(conn, [r["id"] for r in rows])
        for r in rows:
            r["waiting_behind"] = behind[r["id"]]
            r["reason_text"] = words.reason_text(r["reason"])
        audit_cli.cli_items_read(eng, [r["id"] for r in rows], action="search")  # each patient listed
        if args.json:
            print(json.dumps(rows, default=str, indent=1))
        else:
            for r in rows:
                err = (r["last_error"] or "")[:100]
                if err and r["status"] in ("done", "discarded"):
                    err = f"(earlier error) {err}"
                print(
                    f"{r['id']}\t{r['channel']}\t{r['destination']}\t{r['status']}\t{r['reason'] or ''}\t"
                    f"{r['error_location'] or ''}\t{r['waiting_behind']} waiting\t{err}"
                )
            held = sum(1 for r in rows if r["status"] == "held")
            print(f"{len(rows)} item(s), {held} held", file=sys.stderr)
        return 0
    if args.id is None:
        print("an item id is required", file=sys.stderr)
        return 2
    if args.action == "show":
        from interface.desk import masking

        try:  # the CLI holds the database's credentials: the admin's rule, audited as --user
            why = masking.check_reveal("admin", masking.MESSAGE, args.reveal, args.reason)
        except masking.RevealRefused as exc:
            print(f"--reveal needs --reason: {exc}", file=sys.stderr)
            return 2
        with eng.connect() as conn:
            item = conn.execute(select(work_items).where(work_items.c.id == args.id)).first()
            if item is None:
                print(f"no work item {args.id}", file=sys.stderr)
                return 1
            msg = conn.execute(select(messages).where(messages.c.id == item.message_id)).first()
            hist = [
                dict(r._mapping)
                for r in conn.execute(
                    select(work_attempts)
                    .where(work_attempts.c.item_id == args.id)
                    .order_by(work_attempts.c.id)
                )
            ]
        if why is not None:
            with eng.begin() as conn:
                masking.record_reveal(
                    conn, user=args.user, target_type="message", target_id=msg.id, reason=why, now=_now()
                )
        from interface.hl7.message import decode

        audit_cli.cli_items_read(eng, [args.id], action="view", target_id=args.id)
        out = dict(item._mapping)
        out["message"] = {k: v for k, v in msg._mapping.items() if k not in ("raw", "ack")}
        out["raw"] = masking.message_text(decode(msg.raw).text, why is not None)
        if why is None:  # masked like the console until revealed with a reason
            out["key"] = masking.mask(out["key"])
            out["message"]["patient_id"] = masking.mask(out["message"]["patient_id"])
        out["attempts_history"] = hist
        if args.json:
            print(json.dumps(out, default=str, indent=1))
        else:
            for k, v in out.items():
                if k != "raw":
                    print(f"{k}: {v}")
            print("--- message ---")
            print(out["raw"])
        return 0
    user = args.user
    try:
        with eng.begin() as conn:
            if args.action == "retry":
                errorqueue.retry_item(conn, args.id, user=user, now=_now())
            elif args.action == "discard":
                errorqueue.discard_item(conn, args.id, user=user, reason=args.reason or "", now=_now())
            elif args.action == "resubmit":
                if not args.file:
                    raise errorqueue.ActionError("--file with the edited message is required")
                from interface.engine.client import messages_in_file
                from interface.engine.readmit import frame_in_file, receipt_channels

                channels = receipt_channels(conn, args.id, args.channels)
                # refused at receipt: the file is the frame (a batch, several messages) as it is
                data = frame_in_file(args.file) if channels is not None else messages_in_file(args.file)[0]
                errorqueue.resubmit_item(
                    conn, args.id, data, user=user, now=_now(), reason=args.reason, channels=channels
                )
    except errorqueue.ActionError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.action}: item {args.id}")
    return 0


def _errors_bulk(args, eng) -> int:
    """``errors retry|discard ID ID... --reason R`` or ``--all [--filter k=v]... --reason R``."""
    from interface.desk import errorqueue

    where = None
    if args.all:
        if args.ids:
            print("give item ids or --all, not both", file=sys.stderr)
            return 2
        where = {}
        for f in args.filter:
            k, sep, v = f.partition("=")
            if not sep or k not in ("channel", "reason", "destination", "status"):
                print(f"--filter {f!r}: use channel=, reason=, destination= or status=", file=sys.stderr)
                return 2
            where[k] = tuple(v.split(",")) if k == "status" else v
    try:
        res = errorqueue.bulk_action(
            eng,
            args.action,
            user=args.user,
            reason=args.reason or "",
            now=_now(),
            ids=None if args.all else args.ids,
            where=where,
        )
    except errorqueue.ActionError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "action": res.action,
                    "succeeded": res.succeeded,
                    "truncated": res.truncated,
                    "failed": [{"id": i, "error": e} for i, e in res.failed],
                },
                indent=1,
            )
        )
    else:
        for i in res.succeeded:
            print(f"{args.action}: item {i}")
        for i, e in res.failed:
            print(f"item {i}: {e}", file=sys.stderr)
        if res.truncated:
            print("more items match: run again for the rest", file=sys.stderr)
    return 1 if res.failed else 0


def _errors_reprocess(args, eng) -> int:
    """``errors reprocess MESSAGE_ID --destination NAME [--reason R]``."""
    from interface.config.channels import load_channels
    from interface.desk import errorqueue

    if len(args.ids) != 1 or not args.destination:
        print("reprocess needs one message id and --destination NAME", file=sys.stderr)
        return 2
    try:
        channels = load_channels(Path(args.channels))
        with eng.begin() as conn:
            item = errorqueue.reprocess_message(
                conn,
                args.ids[0],
                args.destination,
                channels=channels,
                user=args.user,
                now=_now(),
                reason=args.reason,
            )
    except (errorqueue.ActionError, ConfigError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"reprocess: message {args.ids[0]} queued to {args.destination} as item {item}")
    return 0
