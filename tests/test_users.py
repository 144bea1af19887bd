"""``interface users``: add, list, passwd, token, disable; passwords hashed, tokens stored hashed."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from interface.desk import users
from interface.desk.users import api_tokens, cli_main
from interface.desk.users import users as users_table
from interface.ops.cli import main as cli_main_entry
from tests.test_web_api import fast_hashing  # noqa: F401  (autouse fixture)


def run(engine, argv, monkeypatch, capsys, stdin=""):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli_main(argv, engine)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_add_generates_password_shown_once_and_hashes_it(engine, monkeypatch, capsys):
    """`users add NAME --role R` prints a generated password once and stores only an argon2 hash."""
    code, out, _ = run(engine, ["add", "alice", "--role", "admin"], monkeypatch, capsys)
    assert code == 0
    password = re.search(r"password \(shown once\): (\S+)", out).group(1)
    with engine.connect() as conn:
        row = conn.execute(select(users_table).where(users_table.c.name == "alice")).first()
        assert row.role == "admin" and row.password_hash.startswith("$argon2id$")
        assert password not in row.password_hash
        assert users.authenticate(conn, "alice", password).role == "admin"
        assert users.authenticate(conn, "alice", password + "x") is None


def test_add_with_password_stdin_and_errors(engine, monkeypatch, capsys):
    """--password-stdin reads the password; duplicates, bad roles and short passwords fail."""
    assert (
        run(
            engine,
            ["add", "bob", "--role", "clerk", "--password-stdin"],
            monkeypatch,
            capsys,
            "a long enough secret\n",
        )[0]
        == 0
    )
    with engine.connect() as conn:
        assert users.authenticate(conn, "bob", "a long enough secret").name == "bob"
    code, _, err = run(
        engine,
        ["add", "bob", "--role", "clerk", "--password-stdin"],
        monkeypatch,
        capsys,
        "a long enough secret\n",
    )
    assert code == 1 and "already exists" in err
    code, _, err = run(
        engine, ["add", "carl", "--role", "clerk", "--password-stdin"], monkeypatch, capsys, "short\n"
    )
    assert code == 1 and "10 characters" in err
    assert run(engine, ["add", "dan", "--role", "wizard"], monkeypatch, capsys)[0] == 2


def test_list_passwd_disable_enable(engine, monkeypatch, capsys):
    """list shows name, role, state; passwd changes the password; disable blocks login."""
    run(
        engine,
        ["add", "bob", "--role", "analyst", "--password-stdin"],
        monkeypatch,
        capsys,
        "first password!\n",
    )
    code, out, _ = run(engine, ["list"], monkeypatch, capsys)
    assert code == 0 and "bob\tanalyst\tactive" in out
    assert (
        run(engine, ["passwd", "bob", "--password-stdin"], monkeypatch, capsys, "second password!\n")[0] == 0
    )
    with engine.connect() as conn:
        assert users.authenticate(conn, "bob", "first password!") is None
        assert users.authenticate(conn, "bob", "second password!") is not None
    assert run(engine, ["disable", "bob"], monkeypatch, capsys)[0] == 0
    assert "bob\tanalyst\tdisabled" in run(engine, ["list"], monkeypatch, capsys)[1]
    with engine.connect() as conn:
        assert users.authenticate(conn, "bob", "second password!") is None
    assert run(engine, ["enable", "bob"], monkeypatch, capsys)[0] == 0
    with engine.connect() as conn:
        assert users.authenticate(conn, "bob", "second password!") is not None
    code, _, err = run(
        engine, ["passwd", "nobody", "--password-stdin"], monkeypatch, capsys, "whatever long\n"
    )
    assert code == 1 and "no user" in err


def test_token_printed_once_stored_as_hash(engine, monkeypatch, capsys):
    """`users token NAME` prints a token that authenticates; the table holds only its SHA-256."""
    run(engine, ["add", "svc", "--role", "analyst"], monkeypatch, capsys)
    code, out, _ = run(engine, ["token", "svc"], monkeypatch, capsys)
    token = out.strip()
    assert code == 0 and token.startswith("ie_") and len(token) > 40
    with engine.connect() as conn:
        stored = conn.scalars(select(api_tokens.c.token_sha256)).all()
        assert token not in stored and len(stored) == 1
        assert users.user_for_token(conn, token).name == "svc"
    run(engine, ["disable", "svc"], monkeypatch, capsys)
    with engine.connect() as conn:
        assert users.user_for_token(conn, token) is None
    code, _, err = run(engine, ["token", "svc"], monkeypatch, capsys)
    assert code == 1 and "disabled" in err


def test_interface_users_through_the_main_cli(db_url, engine, monkeypatch, capsys):
    """`interface users --db URL add ...` reaches users.cli_main."""
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\n"))
    assert (
        cli_main_entry(["users", "--db", db_url, "add", "eve", "--role", "auditor", "--password-stdin"]) == 0
    )
    assert cli_main_entry(["users", "--db", db_url, "list"]) == 0
    assert "eve\tauditor\tactive" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["", "two words", "x" * 129])
def test_bad_user_names(engine, bad):
    with engine.begin() as conn, pytest.raises(users.UserError):
        users.add_user(conn, bad, "clerk", "a long enough secret")
