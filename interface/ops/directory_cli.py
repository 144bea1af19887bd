"""``interface users directory-test NAME``: check a directory bind and the group → role mapping.

Reads ``directory.yaml`` (``--directory FILE``; default ``./directory.yaml``), asks for NAME's
directory password (or reads it from stdin with ``--password-stdin``), binds as the console
would at sign-in and prints the server that answered, the user's DN, groups and the role they
give. Exit 0 when the user would sign in, 1 when not (and why), 2 when no server answers. The
database is not touched and nothing is recorded; the password is never printed.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from interface.config.directory import FILE_NAME
from interface.desk.directory import OK, DirectoryDown, from_file
from interface.hl7.errors import ConfigError


def main(argv: list[str], stdin=None, out=None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    p = argparse.ArgumentParser(prog="interface users directory-test")
    p.add_argument("name", help="the directory user name to sign in as")
    p.add_argument("--directory", default=FILE_NAME, metavar="FILE", help=f"default ./{FILE_NAME}")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        directory = from_file(args.directory)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if directory is None:
        print(f"{args.directory}: no such file (the directory's settings)", file=sys.stderr)
        return 1
    password = (
        stdin.readline().rstrip("\r\n")
        if args.password_stdin
        else getpass.getpass(f"{args.name}'s password: ")
    )
    try:
        answer = directory.authenticate(args.name, password)
    except DirectoryDown as exc:
        print(f"directory down: {exc}", file=sys.stderr)
        return 2
    print(f"server: {answer.server or '-'}", file=out)
    print(f"user: {answer.dn or '-'}", file=out)
    for g in answer.groups:
        print(f"group: {g}", file=out)
    print(f"outcome: {answer.outcome} ({answer.reason})", file=out)
    if answer.outcome == OK:
        print(f"{args.name} would sign in as {answer.role}", file=out)
        return 0
    print(f"{args.name} would not sign in", file=out)
    return 1
