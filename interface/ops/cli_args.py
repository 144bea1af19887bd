"""What every ``interface`` subcommand shares: the database arguments, the engine they name, now."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone


def db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db", help="database URL (default: $INTERFACE_DB_URL or sqlite:///var/interface.store.db)"
    )
    p.add_argument("--var", default="var", help="state directory for the embedded set-up (default ./var)")


def engine(args):
    from interface.store import db

    eng = db.make_engine(db.resolve_url(args.db, args.var))
    db.create_schema(eng)
    return eng


def now():
    return datetime.now(timezone.utc)
