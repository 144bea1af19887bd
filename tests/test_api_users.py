"""User administration from the API (``/api/users...``) and the console page (``/users``): admin
only, CSRF for sessions, audited without secrets, password policy, last-admin protection, tokens."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from interface.desk import users
from interface.store.schema import audit
from tests.test_auth import csrf_of, login
from tests.test_web_api import PASSWORD, TestClient, app, channels, clock, fast_hashing, h, make_user, tokens  # noqa: F401  (fixtures)

NEW_PASSWORD = "another long passphrase"


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def admin(tokens):
    return h(tokens["admin"])  # admin1; clerk1, analyst1, auditor1 exist too


def audit_rows(engine, action=None):
    q = select(audit).where(audit.c.target_type == "user").order_by(audit.c.id)
    if action:
        q = q.where(audit.c.action == action)
    with engine.connect() as conn:
        return conn.execute(q).all()


def user_row(engine, name):
    with engine.connect() as conn:
        return conn.execute(select(users.users).where(users.users.c.name == name)).first()


ROUTES = [
    ("GET", "/api/users", None),
    ("POST", "/api/users", {"name": "x1", "role": "clerk", "password": PASSWORD}),
    ("POST", "/api/users/clerk1/role", {"role": "analyst"}),
    ("POST", "/api/users/clerk1/disable", None),
    ("POST", "/api/users/clerk1/enable", None),
    ("POST", "/api/users/clerk1/password", {"password": PASSWORD}),
    ("POST", "/api/users/clerk1/token", None),
]


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_only_admins(client, tokens, engine, method, path, body):
    """Every /api/users route: 401 without credentials, 403 for clerk, analyst and auditor, and
    none of them changes anything."""
    assert client.request(method, path, json=body).status_code == 401
    before = len(audit_rows(engine))
    for role in ("clerk", "analyst", "auditor"):
        r = client.request(method, path, json=body, headers=h(tokens[role]))
        assert r.status_code == 403 and "needs admin" in r.json()["detail"], (role, r.text)
    assert len(audit_rows(engine)) == before
    assert user_row(engine, "x1") is None and user_row(engine, "clerk1").role == "clerk"


def test_list_users_has_no_secrets(client, admin):
    r = client.get("/api/users", headers=admin)
    assert r.status_code == 200
    rows = {u["name"]: u for u in r.json()["users"]}
    assert set(rows) == {role + "1" for role in users.ROLES}
    assert rows["clerk1"]["role"] == "clerk" and rows["clerk1"]["disabled"] is False
    assert set(rows["clerk1"]) == {
        "name",
        "role",
        "disabled",
        "created_at",
        "password_changed_at",
        "last_login_at",
        "source",
    }
    assert "argon2" not in r.text and "hash" not in r.text


def test_the_last_console_sign_in_is_listed(client, engine, admin, clock):
    """last_login_at: set by a console sign-in (the app's clock), not by API tokens; null for a
    user who never signed in."""
    assert all(u["last_login_at"] is None for u in client.get("/api/users", headers=admin).json()["users"])
    assert login(client, "clerk1").status_code == 303
    rows = {u["name"]: u for u in client.get("/api/users", headers=admin).json()["users"]}
    assert rows["clerk1"]["last_login_at"] == clock.now.isoformat().replace("+00:00", "Z")
    assert rows["admin1"]["last_login_at"] is None  # signs in with a token here
    assert login(client, "clerk1", password="wrong password!").status_code == 401
    assert user_row(engine, "clerk1").last_login_at is not None  # a failed attempt changes nothing


def test_users_cli_lists_the_last_sign_in(engine, tokens, clock, capsys):
    clerk = user_row(engine, "clerk1")
    with engine.begin() as conn:
        users.create_session(conn, users.User(clerk.id, clerk.name, clerk.role), clock.now)
    assert users.cli_main(["list"], engine) == 0
    out = {line.split("\t")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert out["admin1"].endswith("last sign-in never")
    assert out["clerk1"].endswith(f"last sign-in {clock.now:%Y-%m-%d %H:%M:%S} UTC")


def test_add_user_then_login_and_audit(client, engine, admin):
    """201 with the new user; it can log in; the audit row names the admin, not the password;
    the same name again is 409; a short password, a bad role or a bad name is 422 with a message."""
    r = client.post("/api/users", headers=admin, json={"name": "nina", "role": "clerk", "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "nina" and r.json()["role"] == "clerk" and not r.json()["disabled"]
    with engine.connect() as conn:
        assert users.authenticate(conn, "nina", PASSWORD).role == "clerk"
    row = audit_rows(engine, "user_add")[-1]
    assert (row.user, row.target_id, row.detail) == ("admin1", "nina", "role=clerk")
    assert all(PASSWORD not in (a.detail or "") + (a.reason or "") for a in audit_rows(engine))
    r = client.post(
        "/api/users", headers=admin, json={"name": "nina", "role": "analyst", "password": PASSWORD}
    )
    assert r.status_code == 409 and r.json()["detail"] == "user 'nina' already exists"
    r = client.post("/api/users", headers=admin, json={"name": "olga", "role": "clerk", "password": "short"})
    assert r.status_code == 422 and r.json()["detail"] == "a password needs at least 10 characters"
    r = client.post("/api/users", headers=admin, json={"name": "olga", "role": "boss", "password": PASSWORD})
    assert (
        r.status_code == 422
        and "'clerk', 'analyst', 'admin', 'auditor' or 'release'" in r.json()["detail"][0]["msg"]
    )
    r = client.post(
        "/api/users", headers=admin, json={"name": "ol ga", "role": "clerk", "password": PASSWORD}
    )
    assert r.status_code == 422 and "without spaces" in r.json()["detail"]
    assert user_row(engine, "olga") is None and user_row(engine, "ol ga") is None


def test_role_change_applies_at_once_and_is_audited(client, engine, admin, tokens):
    assert client.get("/api/audit", headers=h(tokens["clerk"])).status_code == 403
    r = client.post("/api/users/clerk1/role", headers=admin, json={"role": "auditor"})
    assert r.status_code == 200 and r.json()["role"] == "auditor"
    assert client.get("/api/audit", headers=h(tokens["clerk"])).status_code == 200  # same token, new role
    row = audit_rows(engine, "user_role")[-1]
    assert (row.user, row.target_id, row.detail) == ("admin1", "clerk1", "role=clerk->auditor")
    assert client.post("/api/users/nobody/role", headers=admin, json={"role": "clerk"}).status_code == 404
    assert client.post("/api/users/clerk1/role", headers=admin, json={"role": "root"}).status_code == 422


def test_disable_enable(client, engine, admin, tokens):
    """Disabling revokes the user's tokens (and sessions); enabling lets it log in again."""
    r = client.post("/api/users/clerk1/disable", headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert client.get("/api/me", headers=h(tokens["clerk"])).status_code == 401
    r = client.post("/api/users/clerk1/enable", headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert login(client, "clerk1").status_code == 303
    assert [(a.user, a.action) for a in audit_rows(engine) if a.target_id == "clerk1"][-3:] == [
        ("admin1", "user_disable"),
        ("admin1", "user_enable"),
        ("clerk1", "login"),
    ]
    assert client.post("/api/users/nobody/disable", headers=admin).status_code == 404
    assert client.post("/api/users/nobody/enable", headers=admin).status_code == 404


def test_last_admin_cannot_be_disabled_or_demoted(client, engine, admin):
    """409 while admin1 is the only enabled admin; once there is another, it may go."""
    for path, body in (("/api/users/admin1/disable", None), ("/api/users/admin1/role", {"role": "clerk"})):
        r = client.post(path, headers=admin, json=body)
        assert r.status_code == 409 and "last enabled admin" in r.json()["detail"], r.text
    row = user_row(engine, "admin1")
    assert row.role == "admin" and not row.disabled
    # a disabled admin does not count
    assert client.post("/api/users/clerk1/role", headers=admin, json={"role": "admin"}).status_code == 200
    assert client.post("/api/users/clerk1/disable", headers=admin).status_code == 200
    assert client.post("/api/users/admin1/disable", headers=admin).status_code == 409
    assert client.post("/api/users/clerk1/enable", headers=admin).status_code == 200
    r = client.post("/api/users/admin1/role", headers=admin, json={"role": "analyst"})
    assert r.status_code == 200 and r.json()["role"] == "analyst"
    assert client.get("/api/users", headers=admin).status_code == 403  # admin1 is an analyst now


def test_password_reset_ends_sessions(client, engine, admin):
    """The new password works, the old one does not, the user's sessions end; too short is 422."""
    assert login(client, "clerk1").status_code == 303
    assert client.get("/api/me").status_code == 200
    r = client.post("/api/users/clerk1/password", headers=admin, json={"password": "short"})
    assert r.status_code == 422 and r.json()["detail"] == "a password needs at least 10 characters"
    assert client.get("/api/me").status_code == 200
    r = client.post("/api/users/clerk1/password", headers=admin, json={"password": NEW_PASSWORD})
    assert r.status_code == 200 and r.json()["name"] == "clerk1"
    assert client.get("/api/me").status_code == 401  # the session cookie is dead
    with engine.connect() as conn:
        assert users.authenticate(conn, "clerk1", PASSWORD) is None
        assert users.authenticate(conn, "clerk1", NEW_PASSWORD) is not None
    row = audit_rows(engine, "user_passwd")[-1]
    assert (row.user, row.target_id, row.detail) == ("admin1", "clerk1", None)
    assert (
        client.post("/api/users/nobody/password", headers=admin, json={"password": NEW_PASSWORD}).status_code
        == 404
    )


def test_token_is_returned_once_and_works(client, engine, admin):
    r = client.post("/api/users/analyst1/token", headers=admin)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = r.json()["token"]
    assert token.startswith("ie_") and r.json()["name"] == "analyst1"
    me = client.get("/api/me", headers=h(token))
    assert me.status_code == 200 and me.json()["name"] == "analyst1"
    row = audit_rows(engine, "token_create")[-1]
    assert (row.user, row.target_id) == ("admin1", "analyst1")
    assert all(token not in (a.detail or "") + (a.reason or "") for a in audit_rows(engine))
    assert token not in client.get("/api/users", headers=admin).text
    assert client.post("/api/users/nobody/token", headers=admin).status_code == 404
    client.post("/api/users/analyst1/disable", headers=admin)
    r = client.post("/api/users/analyst1/token", headers=admin)
    assert r.status_code == 409 and "disabled" in r.json()["detail"]


def test_session_needs_csrf(client, engine, tokens):
    """An admin's browser session must send the CSRF token with API changes."""
    assert login(client, "admin1").status_code == 303
    body = {"name": "pat", "role": "clerk", "password": PASSWORD}
    r = client.post("/api/users", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    assert client.post("/api/users/clerk1/disable", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert user_row(engine, "pat") is None and not user_row(engine, "clerk1").disabled
    assert client.post("/api/users", json=body, headers={"X-CSRF-Token": csrf_of(client)}).status_code == 201


# -- the /users page ------------------------------------------------------------------------------


@pytest.fixture
def browser(client, tokens):
    """A logged-in admin browser session: (client, CSRF token)."""
    assert login(client, "admin1").status_code == 303
    client.headers["accept"] = "text/html"
    return client, csrf_of(client)


def test_users_page_lists_and_is_in_the_admin_nav(browser):
    c, _csrf = browser
    r = c.get("/users")
    assert r.status_code == 200 and re.search(r"<h1[^>]*>Users", r.text)
    for name in ("admin1", "clerk1", "analyst1", "auditor1"):
        assert f'data-user="{name}"' in r.text
    assert 'href="/users"' in r.text and "argon2" not in r.text
    assert "Last sign-in" in r.text
    row = {m.group(1): m.group(2) for m in re.finditer(r'data-user="([^"]+)">(.*?)</tr>', r.text, re.S)}
    assert "never" not in row["admin1"] and "never" in row["clerk1"]  # admin1 signed in here
    assert r.text.count('name="csrf_token"') >= 5 and r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("role", ["clerk", "analyst", "auditor"])
def test_users_page_is_admin_only(client, engine, tokens, role):
    """Other roles get the HTML 403 page, no Users link, and cannot post the forms."""
    assert login(client, f"{role}1").status_code == 303
    client.headers["accept"] = "text/html"
    r = client.get("/users")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert 'href="/users"' not in client.get("/").text
    r = client.post(
        "/users/add",
        data={"csrf_token": csrf_of(client), "name": "mal", "role": "admin", "password": PASSWORD},
    )
    assert r.status_code == 403 and user_row(engine, "mal") is None


def test_users_page_forms(browser, engine):
    """Add, change role, reset password, disable, enable through the forms; each audited."""
    c, csrf = browser
    r = c.post(
        "/users/add",
        data={"csrf_token": csrf, "name": "quinn", "role": "analyst", "password": PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/users?done=add&who=quinn"
    assert "User added: quinn" in c.get(r.headers["location"]).text
    assert user_row(engine, "quinn").role == "analyst"
    r = c.post("/users/role", data={"csrf_token": csrf, "name": "quinn", "role": "clerk"})
    assert r.status_code == 200 and "Role changed: quinn" in r.text
    r = c.post("/users/password", data={"csrf_token": csrf, "name": "quinn", "password": NEW_PASSWORD})
    assert r.status_code == 200 and "Password set" in r.text
    r = c.post("/users/disable", data={"csrf_token": csrf, "name": "quinn"})
    assert r.status_code == 200 and user_row(engine, "quinn").disabled
    assert re.search(r'data-user="quinn">.*?disabled.*?action="/users/enable"', r.text, re.S)
    r = c.post("/users/enable", data={"csrf_token": csrf, "name": "quinn"})
    assert r.status_code == 200 and not user_row(engine, "quinn").disabled
    row = user_row(engine, "quinn")
    assert row.role == "clerk"
    with engine.connect() as conn:
        assert users.authenticate(conn, "quinn", NEW_PASSWORD) is not None
    assert [(a.user, a.action) for a in audit_rows(engine) if a.target_id == "quinn"] == [
        ("admin1", "user_add"),
        ("admin1", "user_role"),
        ("admin1", "user_passwd"),
        ("admin1", "user_disable"),
        ("admin1", "user_enable"),
    ]
    page = c.get("/users?done=add&who=<b>x</b>").text  # a name from the URL is shown only if real
    assert "User added</p>" in page and "&lt;b&gt;" not in page and "<b>x" not in page


def test_users_page_errors_show_on_the_page(browser, engine):
    """A refused change re-shows the page with the message and the status (422, 409, 404)."""
    c, csrf = browser
    r = c.post("/users/add", data={"csrf_token": csrf, "name": "rita", "role": "clerk", "password": "short"})
    assert r.status_code == 422 and "a password needs at least 10 characters" in r.text
    assert 'value="rita"' in r.text and user_row(engine, "rita") is None
    r = c.post(
        "/users/add", data={"csrf_token": csrf, "name": "clerk1", "role": "clerk", "password": PASSWORD}
    )
    assert r.status_code == 409 and "already exists" in r.text
    r = c.post("/users/add", data={"csrf_token": csrf, "name": "sam", "role": "root", "password": PASSWORD})
    assert r.status_code == 422 and "role must be one of" in r.text
    r = c.post("/users/disable", data={"csrf_token": csrf, "name": "admin1"})
    assert r.status_code == 409 and "last enabled admin" in r.text and not user_row(engine, "admin1").disabled
    r = c.post("/users/role", data={"csrf_token": csrf, "name": "admin1", "role": "clerk"})
    assert r.status_code == 409 and user_row(engine, "admin1").role == "admin"
    r = c.post("/users/password", data={"csrf_token": csrf, "name": "nobody", "password": NEW_PASSWORD})
    assert r.status_code == 404 and "no user" in r.text
    for r in (
        c.post(
            "/users/add", data={"csrf_token": csrf, "name": "a\x00b", "role": "clerk", "password": PASSWORD}
        ),
        c.post("/users/token", data={"csrf_token": csrf, "name": "a\x00b"}),
    ):
        assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")


def test_users_page_needs_csrf(browser, engine):
    c, _csrf = browser
    tokens_before = len(audit_rows(engine, "token_create"))
    for path, data in (
        ("/users/add", {"name": "tess", "role": "admin", "password": PASSWORD}),
        ("/users/disable", {"name": "clerk1"}),
        ("/users/token", {"name": "clerk1"}),
        ("/users/role", {"name": "clerk1", "role": "admin", "csrf_token": "forged"}),
    ):
        r = c.post(path, data=data)
        assert (
            r.status_code == 403 and "CSRF" in r.text and r.headers["content-type"].startswith("text/html")
        ), path
    assert user_row(engine, "tess") is None
    assert user_row(engine, "clerk1").role == "clerk" and not user_row(engine, "clerk1").disabled
    assert len(audit_rows(engine, "token_create")) == tokens_before


def test_users_page_token_shown_once(browser, engine):
    c, csrf = browser
    before = len(audit_rows(engine, "token_create"))
    r = c.post("/users/token", data={"csrf_token": csrf, "name": "auditor1"}, follow_redirects=False)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = re.search(r'<code class="token">(ie_[^<]+)</code>', r.text).group(1)
    assert c.get("/api/me", headers=h(token)).json()["name"] == "auditor1"
    assert token not in c.get("/users").text  # shown once
    assert len(audit_rows(engine, "token_create")) == before + 1
