"""API tokens expire, are listed and revoked one by one (CLI, /api/users, the Users page), are
revoked by a password change, and tokens made before expiry existed keep working; the password
policy (length, not only spaces, not the user name, zxcvbn) everywhere a password is set."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import text

from interface.desk import users
from interface.ops import cli
from interface.store.db import make_engine
from tests.test_auth import csrf_of, login
from tests.test_migrations import empty_url  # noqa: F401  (fixture)
from tests.test_web_api import (  # noqa: F401  (fixtures)
    NOW,
    PASSWORD,
    TestClient,
    app,
    channels,
    clock,
    fast_hashing,
    h,
    make_user,
    tokens,
)


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def cli_users(engine, argv, monkeypatch, capsys, stdin=""):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = users.cli_main(argv, engine)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_token_expires_after_its_days(client, engine, clock):
    """A token made with 1 day works until a day has passed, then is refused (401)."""
    make_user(engine, "bot", "analyst")
    with engine.begin() as conn:
        token = users.new_token(conn, "bot", expires_days=1, now=NOW)
    assert client.get("/api/me", headers=h(token)).status_code == 200
    clock.advance(days=1, seconds=-1)
    assert client.get("/api/me", headers=h(token)).status_code == 200
    clock.advance(seconds=1)
    assert client.get("/api/me", headers=h(token)).status_code == 401


def test_default_token_lifetime_is_90_days(engine):
    """Without --expires-days a token expires 90 days after it was made."""
    make_user(engine, "bot", "analyst")
    with engine.connect() as conn:
        (t,) = users.list_tokens(conn, "bot", NOW)
    assert users.TOKEN_DAYS == 90
    assert users._aware(t["expires_at"]) == NOW + timedelta(days=90) and t["state"] == "active"


def test_cli_token_tokens_revoke_token(engine, monkeypatch, capsys, app):
    """`users token NAME --expires-days N` prints a token; `users tokens NAME` lists id, state and
    expiry (never the token); `users revoke-token ID` stops that token and no other."""
    make_user(engine, "bot", "analyst")
    code, out, _ = cli_users(engine, ["token", "bot", "--expires-days", "7"], monkeypatch, capsys)
    first = out.strip()
    assert code == 0 and first.startswith("ie_")
    second = cli_users(engine, ["token", "bot"], monkeypatch, capsys)[1].strip()
    code, out, _ = cli_users(engine, ["tokens", "bot"], monkeypatch, capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and all("\tactive\t" in line for line in lines)
    assert first not in out and second not in out
    first_id = max(int(line.split("\t")[0]) for line in lines) - 1  # newest first: second, first, make_user's
    code, out, _ = cli_users(engine, ["revoke-token", str(first_id)], monkeypatch, capsys)
    assert code == 0 and f"token {first_id} of bot revoked" in out
    with TestClient(app) as c:
        assert c.get("/api/me", headers=h(first)).status_code == 401
        assert c.get("/api/me", headers=h(second)).status_code == 200
    assert f"{first_id}\trevoked" in cli_users(engine, ["tokens", "bot"], monkeypatch, capsys)[1]
    code, _, err = cli_users(engine, ["revoke-token", "999999"], monkeypatch, capsys)
    assert code == 1 and "no API token 999999" in err
    code, _, err = cli_users(engine, ["token", "bot", "--expires-days", "0"], monkeypatch, capsys)
    assert code == 1 and "1 to 3650 days" in err


def test_password_change_revokes_the_users_tokens(client, engine, monkeypatch, capsys):
    """A new password (CLI or API) revokes every API token of that user, not other users'."""
    token = make_user(engine, "bot", "analyst")
    other = make_user(engine, "ops", "analyst")
    assert (
        cli_users(
            engine, ["passwd", "bot", "--password-stdin"], monkeypatch, capsys, "another long passphrase\n"
        )[0]
        == 0
    )
    assert client.get("/api/me", headers=h(token)).status_code == 401
    assert client.get("/api/me", headers=h(other)).status_code == 200
    admin = make_user(engine, "root", "admin")
    r = client.post("/api/users/ops/password", headers=h(admin), json={"password": "yet another passphrase"})
    assert r.status_code == 200
    assert client.get("/api/me", headers=h(other)).status_code == 401


def test_api_tokens_issue_list_revoke(client, engine, clock):
    """POST /api/users/{name}/token {"expires_days"} -> the token once with its id and expiry;
    GET .../tokens lists them without secrets; POST .../tokens/{id}/revoke revokes one (404 for
    another user's id); each is audited with the acting admin."""
    admin = make_user(engine, "root", "admin")
    make_user(engine, "bot", "analyst")
    r = client.post("/api/users/bot/token", headers=h(admin), json={"expires_days": 2})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    made = r.json()
    assert made["token"].startswith("ie_") and made["expires_at"].startswith("2026-11-24T12:00:00")
    listed = client.get("/api/users/bot/tokens", headers=h(admin)).json()["tokens"]
    assert [t["id"] for t in listed][0] == made["id"] and len(listed) == 2
    assert all(set(t) == {"id", "created_at", "expires_at", "revoked", "state"} for t in listed)
    assert made["token"] not in str(listed)
    assert client.post(f"/api/users/root/tokens/{made['id']}/revoke", headers=h(admin)).status_code == 404
    r = client.post(f"/api/users/bot/tokens/{made['id']}/revoke", headers=h(admin))
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert client.get("/api/me", headers=h(made["token"])).status_code == 401
    short = client.post("/api/users/bot/token", headers=h(admin), json={"expires_days": 1}).json()
    clock.advance(days=3)
    states = {
        t["id"]: t["state"] for t in client.get("/api/users/bot/tokens", headers=h(admin)).json()["tokens"]
    }
    assert states[made["id"]] == "revoked" and states[short["id"]] == "expired"
    assert sorted(states.values()) == ["active", "expired", "revoked"]
    assert client.post("/api/users/bot/token", headers=h(admin), json={"expires_days": 0}).status_code == 422
    assert client.get("/api/users/nobody/tokens", headers=h(admin)).status_code == 404
    from tests.test_api_users import audit_rows

    assert [(a.user, a.target_id, a.detail) for a in audit_rows(engine, "token_revoke")] == [
        ("root", "bot", f"id={made['id']}")
    ]


def test_users_page_lists_and_revokes_tokens(client, engine, tokens):
    """The Users page lists each user's tokens with their state and revokes one with its button;
    the token form takes a lifetime in days."""
    bot = make_user(engine, "bot", "analyst")
    assert login(client, "admin1").status_code == 303
    page = client.get("/users", headers={"Accept": "text/html"}).text
    m = re.search(r'data-tokens-of="bot">.*?data-token="(\d+)".*?active', page, re.S)
    assert m, page
    csrf = csrf_of(client)
    r = client.post("/users/revoke-token", data={"csrf_token": csrf, "name": "bot", "token_id": m.group(1)})
    assert r.status_code == 200 and "API token revoked: bot" in r.text
    assert client.get("/api/me", headers=h(bot)).status_code == 401
    r = client.post("/users/token", data={"csrf_token": csrf, "name": "bot", "expires_days": "3"})
    assert r.status_code == 200 and "API token issued for bot (3 days)" in r.text
    new = re.search(r'<code class="token">([^<]+)</code>', r.text).group(1)
    assert client.get("/api/me", headers=h(new)).status_code == 200
    r = client.post(
        "/users/revoke-token", data={"csrf_token": csrf, "name": "clerk1", "token_id": m.group(1)}
    )
    assert r.status_code == 404


def test_tokens_made_before_expiry_keep_working(empty_url):
    """A token made at schema revision 0004 (no expiry column) still authenticates after the
    upgrade, listed as never expiring."""
    assert cli.main(["db", "upgrade", "0004", "--db", empty_url]) == 0
    eng = make_engine(empty_url)
    try:
        token = "ie_" + "a" * 43
        with eng.begin() as conn:
            uid = conn.execute(
                text(
                    "INSERT INTO users (name, role, password_hash, disabled, created_at, password_changed_at) "
                    "VALUES ('old', 'analyst', 'x', :f, :t, :t) RETURNING id"
                ),
                {"f": False, "t": NOW},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO api_tokens (user_id, token_sha256, created_at, revoked) "
                    "VALUES (:u, :s, :t, :f)"
                ),
                {"u": uid, "s": users._sha(token), "t": NOW, "f": False},
            )
        assert cli.main(["db", "upgrade", "--db", empty_url]) == 0
        with eng.connect() as conn:
            assert users.user_for_token(conn, token, NOW + timedelta(days=5000)).name == "old"
            (t,) = users.list_tokens(conn, "old", NOW)
        assert t["expires_at"] is None and t["state"] == "active"
    finally:
        eng.dispose()


WEAK = [
    ("short pw", "at least 10"),
    ("          ", "only spaces"),
    ("password1234", "too weak"),
    ("qwertyuiop123", "too weak"),
    ("aaaaaaaaaaaaaaa", "too weak"),
    ("bobbybobby", "user name"),
    ("ybbobybbob", "user name"),
    ("BobbyBobby ", "user name"),
    ("bobbybobby2026", "too weak"),
]


@pytest.mark.parametrize("password,why", WEAK)
def test_password_policy_refuses_weak_passwords(engine, monkeypatch, capsys, password, why):
    """Too short, only spaces, common or patterned (zxcvbn), or the user name: refused by the CLI
    with the reason, by the API with 422; nothing stored."""
    code, _, err = cli_users(
        engine,
        ["add", "bobbybobby", "--role", "clerk", "--password-stdin"],
        monkeypatch,
        capsys,
        password + "\n",
    )
    assert code == 1 and why in err
    with engine.connect() as conn:
        assert users.list_users(conn) == []


@pytest.mark.parametrize("password,why", WEAK[:4])
def test_password_policy_over_the_api_and_page(client, engine, tokens, password, why):
    """The same policy on POST /api/users, /api/users/{name}/password and the Users page."""
    admin = h(tokens["admin"])
    r = client.post(
        "/api/users", headers=admin, json={"name": "bobbybobby", "role": "clerk", "password": password}
    )
    assert r.status_code == 422 and why in r.json()["detail"]
    r = client.post("/api/users/clerk1/password", headers=admin, json={"password": password})
    assert r.status_code == 422 and why in r.json()["detail"]
    assert login(client, "admin1").status_code == 303
    r = client.post(
        "/users/add",
        data={"csrf_token": csrf_of(client), "name": "bobbybobby", "role": "clerk", "password": password},
    )
    assert r.status_code == 422 and why in r.text


def test_strong_passphrases_pass(engine):
    """Passphrases of uncommon words pass, and so does the CLI's generated password."""
    import secrets

    for pw in (PASSWORD, "violet tractor on the moor", secrets.token_urlsafe(15)):
        users.new_password(pw, "bob")
    with engine.begin() as conn:
        users.add_user(conn, "bob", "clerk", users.new_password("violet tractor on the moor", "bob"), now=NOW)
        assert users.authenticate(conn, "bob", "violet tractor on the moor") is not None
