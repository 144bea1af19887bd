"""``interface channels``: run channels from the command line, as the console's channels page does.

* ``interface channels list``: each channel's intake (paused or not), the endpoints the engine
  processes bound and their connections, and the paused destinations;
* ``interface channels pause NAME [--destination D] [--reason R]`` / ``resume NAME
  [--destination D]``: a channel's intake or one destination's queue (every engine process on
  the database takes it within a second);
* ``interface channels retry NAME DESTINATION``: every item of the destination in error back in
  the queue, and those waiting for their next attempt tried now.

Each action is audited as ``--user`` (default ``cli``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from interface.desk import channel_actions
from interface.store import channel_controls


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interface channels", description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["list", "pause", "resume", "retry"])
    p.add_argument("name", nargs="?", help="the channel")
    p.add_argument("destination_arg", nargs="?", metavar="DESTINATION", help="retry: the destination")
    p.add_argument("--destination", help="pause / resume: this destination's queue instead of the intake")
    p.add_argument("--reason", help="pause: why (kept with the pause and in the audit trail)")
    p.add_argument("--user", default="cli")
    return p


def cli_main(argv: list[str], db, now: datetime | None = None, out=None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    now = now or datetime.now(timezone.utc)
    if args.action == "list":
        with db.connect() as conn:
            paused = channel_controls.paused(conn)
            live = channel_controls.listeners(conn, now)
        names = sorted({p.channel for p in paused} | {r.channel for r in live})
        if not names:
            print("no channel is paused and no engine process has reported an endpoint", file=out)
        for name in names:
            intake = next((p for p in paused if p.channel == name and p.destination == ""), None)
            state = f"paused by {intake.paused_by}" if intake else "taking messages"
            print(f"{name}\t{state}", file=out)
            for r in (r for r in live if r.channel == name):
                print(f"  {r.process}\t{r.endpoint}\tport {r.port}\t{r.connections} connection(s)", file=out)
            for p in (p for p in paused if p.channel == name and p.destination):
                print(f"  destination {p.destination} paused by {p.paused_by}", file=out)
        return 0
    if not args.name:
        print(f"interface channels {args.action}: which channel?", file=sys.stderr)
        return 2
    if args.action == "retry":
        dest = args.destination_arg or args.destination
        if not dest:
            print("interface channels retry NAME DESTINATION", file=sys.stderr)
            return 2
        r = channel_actions.retry_destination(db, args.name, dest, user=args.user, now=now)
        print(
            f"{args.name}/{dest}: {len(r.retried)} item(s) in error put back in the queue, "
            f"{r.rescheduled} waiting item(s) tried now"
            + (f", {len(r.failed)} could not be" if r.failed else ""),
            file=out,
        )
        return 1 if r.failed else 0
    paused = args.action == "pause"
    changed = channel_actions.set_paused(
        db, args.name, args.destination, paused, user=args.user, now=now, reason=args.reason
    )
    what = f"{args.name}/{args.destination}" if args.destination else f"{args.name} intake"
    verb = "paused" if paused else "resumed"
    print(f"{what} {verb}" if changed else f"{what} was already {verb}", file=out)
    return 0
