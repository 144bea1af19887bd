"""``interface``: the command line. Turns argv and the environment into calls; no logic of its own."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from twisted.internet.error import CannotListenError

from interface.hl7.errors import ConfigError
from interface.ops import cli_args, errors_cli

_db_args, _engine, _now = cli_args.db_args, cli_args.engine, cli_args.now


# -- run ----------------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from interface.ops.settings import Settings  # not runtime: the --workers supervisor stays small

    try:
        web = args.web.rsplit(":", 1)
        settings = Settings(
            channels_dir=Path(args.channels),
            mappings_dir=Path(args.mappings),
            var_dir=Path(args.var),
            db_url=args.db,
            web_host=web[0],
            web_port=None if args.no_web else int(web[1]),
            web_tls=_web_tls(args),
            workers=args.workers,
            port_overrides=_listen_overrides(args.listen),
            ready_file=Path(args.ready_file) if args.ready_file else None,
            pid_file=Path(args.var) / "interface.pid",
            alerts_file=_alerts_file(args),
            content_dir=Path(args.content_dir) if args.content_dir else None,
        )
        if args.workers != 1:  # N engine processes sharing the listeners (0: one per core)
            from interface.ops.cluster import supervise

            settings.workers = 1
            return supervise(settings, args.workers)
        from interface.engine.tls_stack import install_reactor

        install_reactor()  # before anything imports it: Twisted's TLS only if a channel uses TLS
        from interface.ops.service import run

        return run(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except CannotListenError as exc:  # a port taken by another program: say which, no traceback
        print(
            f"interface run: cannot listen on {exc.interface or '*'}:{exc.port}: {exc.socketError}",
            file=sys.stderr,
        )
        return 1


def _web_tls(args) -> tuple[str, str] | None:
    """``--web-tls CERT KEY``: both files must be there and make a usable pair (ConfigError)."""
    if not getattr(args, "web_tls", None):
        return None
    from interface.web.app import tls_options

    tls_options(tuple(args.web_tls))
    return tuple(args.web_tls)


def _alerts_file(args) -> Path | None:
    """``--alerts FILE`` (must exist), else ``alerts.yaml`` beside the channels directory — read
    if it is there, at start and at every reload (so a file created later is taken by one)."""
    if args.alerts:
        if not Path(args.alerts).is_file():
            raise ConfigError([f"{args.alerts}:1: no such file (--alerts)"])
        return Path(args.alerts)
    return Path(args.channels).parent / "alerts.yaml"


def _listen_overrides(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, endpoint = item.partition("=")
        if not sep or not name or not endpoint:
            raise ConfigError(
                [f"--listen {item!r}: expected CHANNEL=ENDPOINT, e.g. adt=tcp:0:interface=127.0.0.1"]
            )
        out[name] = endpoint
    return out


def cmd_reload(args) -> int:
    from interface.ops.reload import send_reload

    return send_reload(Path(args.var), args.pid, wait=not args.no_wait, timeout=args.timeout)


# -- check --------------------------------------------------------------------------------------


def check_config(paths: list[str]) -> list[str]:
    """Every problem in channels (``channels/scan/`` too), mappings, rules and alerts (``alerts*.yaml``
    files; with no paths, ``./alerts.yaml`` if present) under ``paths``, as ``file:line: message``."""
    from interface.config.channels import _yaml_files, cross_check, load_channel
    from interface.config.scan import check_paths as check_scan
    from interface.config.scan import is_scan_path
    from interface.config.suggest import did_you_mean

    problems: list[str] = []
    channel_files, mapping_paths, rule_files, alert_files = [], [], [], []
    if not paths and Path("alerts.yaml").is_file():
        alert_files.append(Path("alerts.yaml"))
    from interface.config import directory, mail

    problems.extend(
        directory.check_paths([p for p in paths or ["directory.yaml"] if directory.is_checked(p)])
    )
    problems.extend(mail.check_paths([p for p in paths or [mail.FILE_NAME] if mail.is_checked(p)]))
    for p in map(Path, paths or ["channels", "mappings", "rules"]):
        if p.is_file() and p.name.startswith("alerts") and "channels" not in p.resolve().parent.parts:
            alert_files.append(p)
            continue
        if directory.is_checked(p) or mail.is_checked(p):
            continue
        if not p.exists():
            problems.append(f"{p}:1: no such file or directory")
            continue
        parts = set(p.resolve().parts)
        if "mappings" in parts:
            mapping_paths.append(str(p))
        elif "rules" in parts:
            rule_files.extend(_yaml_files(p))
        elif not is_scan_path(p):  # channels/scan/: scan channels, checked by check_scan
            channel_files.extend(_yaml_files(p))
    mapping_names: set[str] | None = None
    if mapping_paths:
        from interface.mapping.loader import check_paths

        problems.extend(check_paths(mapping_paths))
        mapping_names = _mapping_names(mapping_paths)
    elif Path("mappings").is_dir():
        mapping_names = _mapping_names(["mappings"])
    loaded = []
    for f in channel_files:
        try:
            ch, doc = load_channel(f)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        loaded.append((ch, doc))
        if mapping_names is not None:
            for i, d in enumerate(ch.destinations):
                if d.type == "store" and d.mapping not in mapping_names:
                    where = (
                        doc.where(("mapping",))
                        if ch.mapping == d.mapping
                        else doc.where(("destinations", i, "mapping"))
                    )
                    problems.append(
                        f"{where}: unknown mapping {d.mapping!r}{did_you_mean(d.mapping, mapping_names)}"
                    )
    problems.extend(cross_check(loaded) + check_scan(paths or ["channels"]))  # a name or port used twice
    if alert_files:
        from interface.ops.alert_rules import check_paths as check_alerts

        problems.extend(
            check_alerts(
                [str(f) for f in alert_files],
                {ch.name for ch, _ in loaded} if channel_files else None,
                {d.name for ch, _ in loaded for d in ch.destinations}
                | {"application_ack", "connection_ack"}  # queued ACK returns
                if channel_files
                else None,
            )
        )
    if rule_files:
        from interface.rules.chart_prep import check_paths as check_prep
        from interface.rules.chart_prep import is_settings_file

        problems.extend(check_prep([str(f) for f in rule_files if is_settings_file(f)]))
        rule_files = [f for f in rule_files if not is_settings_file(f)]

        from interface.rules.roi import check_paths as check_roi
        from interface.rules.roi import is_settings_file as is_roi

        problems.extend(check_roi([str(f) for f in rule_files if is_roi(f)]))
        rule_files = [f for f in rule_files if not is_roi(f)]

        from interface.rules.identity import check_paths as check_identity

        identity_files = [f for f in rule_files if Path(f).stem.startswith("identity")]
        problems.extend(check_identity([str(f) for f in identity_files]))
        rule_files = [f for f in rule_files if f not in identity_files]

        from interface.rules import code_tables, sensitivity

        problems.extend(code_tables.check_paths([f for f in rule_files if code_tables.is_tables_file(f)]))
        rule_files = [f for f in rule_files if not code_tables.is_tables_file(f)]

        problems.extend(sensitivity.check_paths([f for f in rule_files if sensitivity.is_rules_file(f)]))
        rule_files = [f for f in rule_files if not sensitivity.is_rules_file(f)]
    if rule_files:
        try:
            from interface.rules.completeness import check_paths as check_rules

            problems.extend(check_rules([str(f) for f in rule_files]))
        except ImportError:
            pass
    return problems


def _mapping_names(paths: list[str]) -> set[str]:
    """The ``name:`` of every mapping file (in these directories), read from the YAML alone (a
    mapping with other problems still names itself, so channels naming it are not reported)."""
    from interface.config.yamlfile import load_yaml
    from interface.mapping.loader import mapping_files

    names: set[str] = set()
    for d in paths:
        for f in mapping_files(d) if Path(d).is_dir() else [Path(d)]:
            try:
                data = load_yaml(f, keep_going=True).data
            except ConfigError:
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                names.add(data["name"])
    return names


def cmd_check(args) -> int:
    problems = check_config(args.paths)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("ok")
    return 0


# -- send ---------------------------------------------------------------------------------------


def cmd_send(args) -> int:
    from interface.engine.client import MLLPClient, messages_in_file, tls_context

    tls = (
        tls_context(args.ca, args.cert, args.key, args.insecure)
        if (args.tls or args.ca or args.cert)
        else None
    )
    all_ok = True
    client = MLLPClient(args.host, args.port, timeout=args.timeout, tls=tls)
    try:
        for path in args.files:
            try:
                msgs = messages_in_file(path)
            except Exception as exc:
                print(f"{path}: cannot read: {exc}", file=sys.stderr)
                all_ok = False
                continue
            for m in msgs:
                r = client.send(m)
                all_ok &= r.ok
                line = f"{r.control_id or '-'}\t{r.code}"
                if r.text and not r.ok:
                    line += f"\t{r.text}"
                print(f"{path}\t{line}")
    except ConnectionRefusedError:
        print(
            f"cannot connect to {args.host}:{args.port}: is `interface run` (make run) started?",
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()
    return 0 if all_ok else 1


# -- test ---------------------------------------------------------------------------------------


def cmd_test(args) -> int:
    if not args.channel and _names_channels(args):  # ``interface test adt file.hl7``
        args.channel, args.files = args.files[0], args.files[1:]
    if args.channel:
        from interface.ops.dryrun import dry_run

        return dry_run(
            args.channel,
            args.files,
            channels_dir=Path(args.channels),
            mappings_dir=Path(args.mappings),
            db_url=args.db,
        )
    from interface.mapping.testing import main as test_main

    return test_main(args.files)


def _names_channels(args) -> bool:
    """``interface test NAME FILE...``: the first word is no file but names channels of
    ``--channels`` (``adt`` or ``adt,mdm``), so it means ``--channel NAME``."""
    if len(args.files) < 2 or Path(args.files[0]).exists():
        return False
    from interface.config.channels import load_channels

    try:
        names = {c.name for c in load_channels(Path(args.channels))}
    except Exception:  # a configuration problem: the mapping tests' own error says it
        return False
    return all(n.strip() in names for n in args.files[0].split(","))


# -- delegated commands -------------------------------------------------------------------------


def cmd_delegated(args, rest) -> int:
    """The subcommands that parse their own arguments: ``cli_main(argv, engine)`` of their module."""
    from interface.desk import chart_prep
    from interface.ops import audit_cli, channels_cli
    from interface.store import deficiencies

    modules = {
        "deficiencies": deficiencies,
        "chart-prep": chart_prep,
        "audit": audit_cli,
        "channels": channels_cli,
    }
    return modules[args.command].cli_main(rest, _engine(args))


def cmd_scan(args, rest) -> int:
    from interface.ops.scan_cli import cli_main

    return cli_main(rest, _engine(args), args)


def cmd_roi(args, rest) -> int:
    from interface.ops.roi_cli import main as roi_main

    return roi_main(rest, args)


def cmd_users(args, rest) -> int:
    from interface.desk.users import cli_main
    from interface.ops import directory_cli

    if rest[:1] == ["directory-test"]:  # the directory, not the database
        return directory_cli.main(rest[1:])
    return cli_main(rest, _engine(args))


def cmd_db(args, rest) -> int:
    from interface.ops.dbcli import cli_main

    return cli_main(rest, args)


def cmd_bench(args, rest) -> int:
    from interface.ops.bench import main as bench_main

    return bench_main((["--db", args.db] if args.db else []) + rest)  # --db is parsed here


def cmd_web(args) -> int:
    from interface.ops import roi_outbox
    from interface.web.app import serve

    return serve(
        db_url=args.db,
        var_dir=args.var,
        host=args.host,
        port=args.port,
        channels_dir=Path(args.channels),
        tls=tuple(args.web_tls) if args.web_tls else None,
        background=roi_outbox.start,  # the console alone still retries the ROI e-mails
    )


def cmd_content(args) -> int:
    """``interface content import DIR``: blobs of a directory store into the database store."""
    from interface.store.content import import_dir

    eng = _engine(args)
    try:
        with eng.begin() as conn:
            n = import_dir(conn, Path(args.directory), _now())
    except (OSError, ValueError) as exc:
        print(f"content import: {exc}", file=sys.stderr)
        return 1
    print(f"content import: {n} blob(s) copied into the database")
    return 0


def cmd_schema(args) -> int:
    if args.kind == "channel":
        from interface.config.channels import Channel

        print(json.dumps(Channel.model_json_schema(), indent=1))
    else:
        from interface.mapping.spec import json_schema

        print(json.dumps(json_schema(), indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interface", description="HL7 v2 interface engine")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="start every channel, the workers and the web console")
    _db_args(r)
    r.add_argument("--channels", default="channels")
    r.add_argument("--mappings", default="mappings")
    r.add_argument("--web", default="127.0.0.1:8080", help="web console address (HOST:PORT)")
    r.add_argument(
        "--content-dir",
        metavar="DIR",
        help="document content in this (shared) directory; default: ./var/content with the "
        "embedded SQLite, the database itself otherwise",
    )
    r.add_argument("--no-web", action="store_true")
    r.add_argument(
        "--web-tls",
        nargs=2,
        metavar=("CERT", "KEY"),
        help="serve the console over https with this PEM certificate (chain) and key",
    )
    r.add_argument(
        "--workers",
        type=int,
        default=1,
        help="engine processes sharing the listening ports (0: one per CPU core; see docs/operations.md)",
    )
    r.add_argument(
        "--listen",
        action="append",
        metavar="CHANNEL=ENDPOINT",
        help="override a channel's listen endpoint (repeatable), e.g. adt=tcp:0:interface=127.0.0.1",
    )
    r.add_argument(
        "--alerts",
        metavar="FILE",
        help="alert rules (default: alerts.yaml beside the channels directory, if present; docs/alerts.md)",
    )
    r.add_argument(
        "--ready-file",
        metavar="PATH",
        help='write {"pid", "ports": {channel: port}, "web_port"} as JSON once listening',
    )
    r.set_defaults(func=cmd_run)

    rl = sub.add_parser(
        "reload",
        help="re-read channels, mappings and rules in the running engine "
        "(SIGHUP; unchanged channels keep their connections)",
    )
    rl.add_argument("--var", default="var", help="the engine's state directory (its interface.pid)")
    rl.add_argument("--pid", type=int, help="signal this process instead of the one in VAR/interface.pid")
    rl.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the outcome")
    rl.add_argument("--no-wait", action="store_true", help="send the signal and return")
    rl.set_defaults(func=cmd_reload)

    c = sub.add_parser("check", help="validate channels, mappings and rules (file:line: message)")
    c.add_argument("paths", nargs="*")
    c.set_defaults(func=cmd_check)

    t = sub.add_parser("test", help="run mapping tests, or show what messages would change")
    t.add_argument("files", nargs="*")
    t.add_argument("--channel")
    t.add_argument("--channels", default="channels")
    t.add_argument("--mappings", default="mappings")
    t.add_argument(
        "--db",
        help="with --channel: try the messages against this database's charts "
        "(rolled back; default: an empty throwaway database)",
    )
    t.set_defaults(func=cmd_test)

    s = sub.add_parser("send", help="send messages over MLLP and print each ACK code")
    s.add_argument("files", nargs="+")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=2575)
    s.add_argument("--timeout", type=float, default=30.0)
    s.add_argument("--tls", action="store_true")
    s.add_argument("--ca")
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--insecure", action="store_true", help="TLS without verifying the server")
    s.set_defaults(func=cmd_send)

    e = sub.add_parser(
        "errors",
        help="the error queue: list, show, retry, discard, resubmit; file --mrn, file-anyway, candidates",
    )
    e.add_argument(
        "action",
        choices=[
            "list",
            "show",
            "retry",
            "discard",
            "resubmit",
            "reprocess",
            "file",
            "file-anyway",
            "send-back",
            "candidates",
        ],
    )
    e.add_argument("ids", nargs="*", type=int, metavar="ID", help="item id(s); for reprocess, the message id")
    e.add_argument("--all", action="store_true", help="retry/discard every item matching --filter")
    e.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --all: channel=, reason=, destination=, status= (repeatable)",
    )
    e.add_argument("--destination", help="list: only this destination; reprocess: the destination to send to")
    e.add_argument(
        "--channels",
        default="channels",
        help="reprocess, and resubmit of a message refused at receipt: the channels directory",
    )
    e.add_argument("--reason", help="list: the error reason to show; discard, resubmit, show --reveal: why")
    e.add_argument(
        "--reveal", action="store_true", help="show: the message unmasked (needs --reason; audited as --user)"
    )
    e.add_argument("--file", help="edited message for resubmit")
    e.add_argument("--mrn", help="file: the chart to file the item's message to (written into PID-3)")
    e.add_argument("--channel")
    e.add_argument(
        "--status", default="error,held", help="list: comma-separated statuses (default: failed and held)"
    )
    e.add_argument("--limit", type=int, default=200)
    e.add_argument("--user", default="cli")
    e.add_argument("--json", action="store_true")
    _db_args(e)
    e.set_defaults(func=errors_cli.cmd_errors)

    w = sub.add_parser("web", help="serve the web console alone, against the same database")
    _db_args(w)
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8080)
    w.add_argument("--channels", default="channels")
    w.add_argument(
        "--web-tls",
        nargs=2,
        metavar=("CERT", "KEY"),
        help="serve the console over https with this PEM certificate (chain) and key",
    )
    w.set_defaults(func=cmd_web)

    ct = sub.add_parser("content", help="document content: import a var/content directory into the database")
    ct.add_argument("action", choices=["import"])
    ct.add_argument("directory", help="a content directory (e.g. var/content)")
    _db_args(ct)
    ct.set_defaults(func=cmd_content)

    sc = sub.add_parser("schema", help="print the JSON Schema of channel or mapping files")
    sc.add_argument("kind", choices=["channel", "mapping"])
    sc.set_defaults(func=cmd_schema)

    for name, fn, helptext in (
        ("deficiencies", cmd_delegated, "document completeness worklist"),
        ("users", cmd_users, "console users: add, list, passwd, token(s), revoke-token, directory-test"),
        ("db", cmd_db, "database: upgrade (migrations)"),
        ("bench", cmd_bench, "the load benchmark"),
        ("chart-prep", cmd_delegated, "patients with an appointment soon whose chart has a problem"),
        ("audit", cmd_delegated, "the audit trail: report (by patient or user, CSV), verify (hash chain)"),
        ("scan", cmd_scan, "scanned paper: coversheet, upload, list, show, index, rotate, split, merge"),
        ("channels", cmd_delegated, "pause / resume a channel or destination, retry a destination, list"),
        ("roi", cmd_roi, "release of information: requests, authorizations, releases, disclosures"),
    ):
        d = sub.add_parser(name, help=helptext, add_help=False)
        _db_args(d)
        d.set_defaults(func=None, delegated=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    serving = getattr(args, "func", None) in (cmd_run, cmd_web)  # requests say their own via
    if serving:  # no ``via`` to set (the default is None), and no SQLAlchemy to import for it: the
        # --workers supervisor imports only what it uses
        marked = contextlib.nullcontext()
    else:
        from interface.store.audit import via

        marked = via("cli")  # what a command writes to the audit came by the CLI
    with marked:
        if getattr(args, "delegated", None) is not None:
            return args.delegated(args, rest)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
