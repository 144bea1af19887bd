"""``interface errors file ID --mrn M`` / ``file-anyway ID --reason R`` / ``send-back ID --reason R``
/ ``candidates ID``: the identity desk from the command line (interface.desk.identity_desk)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from interface.hl7.errors import ConfigError
from interface.ops.audit_cli import cli_read


def errors_identity(args, eng, now: datetime) -> int:
    from interface.desk import candidates, identity_desk
    from interface.desk.errorqueue import ActionError

    if len(args.ids) != 1:
        print(f"{args.action} needs exactly one item id", file=sys.stderr)
        return 2
    item_id = args.ids[0]
    try:
        channels = None
        if args.action in ("file", "candidates"):
            from interface.config.channels import load_channels

            channels = load_channels(Path(args.channels)) if Path(args.channels).exists() else []
        if args.action == "candidates":
            with eng.connect() as conn:
                found = candidates.candidates(conn, item_id, channels=channels, limit=args.limit)
            cli_read(eng, [c["mrn"] for c in found], action="candidates", target_type="patient")
            if args.json:
                print(json.dumps(found, indent=1))
            else:
                for c in found:
                    name = f"{c['family'] or ''}, {c['given'] or ''}"
                    print(
                        f"{c['score']:>3}\t{c['mrn']}\t{name}\t{c['birth_date'] or ''}\t{c['sex'] or ''}\t"
                        + "; ".join(c["reasons"])
                    )
                print(f"{len(found)} candidate(s)", file=sys.stderr)
            return 0
        with eng.begin() as conn:
            if args.action == "file":
                if not args.mrn:
                    raise ActionError("--mrn with the chart to file to is required")
                new_id = identity_desk.file_to(
                    conn, item_id, args.mrn, user=args.user, now=now, channels=channels, reason=args.reason
                )
                print(f"file: item {item_id} resubmitted as message {new_id} for chart {args.mrn}")
                return 0
            if args.action == "file-anyway":
                identity_desk.file_anyway(conn, item_id, user=args.user, reason=args.reason or "", now=now)
            else:
                identity_desk.send_back(conn, item_id, user=args.user, reason=args.reason or "", now=now)
    except (ActionError, ConfigError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.action}: item {item_id}")
    return 0
