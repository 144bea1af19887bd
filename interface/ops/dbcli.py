"""``interface db``: show, upgrade and downgrade the schema (Alembic)."""

from __future__ import annotations

import argparse
import logging
import sys

from interface.store.schema_version import (
    SchemaError,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)

log = logging.getLogger("interface.store.migrations")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interface db", description="database schema and retention")
    sub = p.add_subparsers(dest="action", required=True)
    u = sub.add_parser("upgrade", help="apply schema migrations (default: up to the newest)")
    u.add_argument("revision", nargs="?", default="head")
    d = sub.add_parser("downgrade", help="revert migrations down to REVISION (e.g. -1, base)")
    d.add_argument("revision")
    sub.add_parser("current", help="print the database's schema revision and the newest one")
    pr = sub.add_parser("prune", help="delete processed messages older than the retention period")
    pr.add_argument(
        "--older-than", type=float, default=30.0, metavar="DAYS", help="retention in days (default 30)"
    )
    pr.add_argument("--channel", action="append", help="only these channels (repeatable; default all)")
    pr.add_argument("--batch", type=int, default=1000, help="messages per transaction (default 1000)")
    pr.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    pr.add_argument(
        "--vacuum",
        action="store_true",
        help="SQLite: full VACUUM afterwards, switching to incremental vacuum (engine stopped)",
    )
    return p


def cli_main(argv: list[str], args) -> int:
    from interface.store import db as dbmod

    opts = _parser().parse_args(argv)
    url = dbmod.resolve_url(args.db, args.var)
    engine = dbmod.make_engine(url, pool_size=2)
    try:
        if opts.action == "upgrade":
            before, after = upgrade(engine, opts.revision)
            print(
                f"schema: {before or '(empty)'} -> {after}"
                if before != after
                else f"schema: {after} (up to date)"
            )
            return 0
        if opts.action == "downgrade":
            before, after = downgrade(engine, opts.revision)
            print(f"schema: {before} -> {after or '(base)'}")
            return 0
        if opts.action == "current":
            with engine.connect() as conn:
                rev = current_revision(conn)
            head = head_revision()
            state = "up to date" if rev == head else "run `interface db upgrade`"
            print(f"current: {rev or '(none)'}\nhead: {head}\n{state}")
            return 0 if rev == head else 1
        if opts.action == "prune":
            from interface.store.retention import prune_cli

            ensure_schema(engine)
            return prune_cli(engine, opts)
    except SchemaError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 2
