"""Authentication and authorisation: tokens, login sessions, CSRF, roles, logout, WebThread."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from interface.desk import users
from interface.store.schema import audit
from interface.web.app import WebThread, create_app
from tests.test_web_api import NOW, PASSWORD, TestClient, h, make_user


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://testserver") as c:
        yield c


from tests.test_web_api import app, channels, clock, fast_hashing, tokens  # noqa: E402,F401  (fixtures)


def login_token(client) -> str:
    """GET /login sets the login CSRF cookie and puts the same token in the form."""
    page = client.get("/login")
    return re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)


def login(client, name, password=PASSWORD, next="/"):
    return client.post(
        "/login",
        data={"username": name, "password": password, "next": next, "login_token": login_token(client)},
        follow_redirects=False,
    )


def csrf_of(client) -> str:
    return client.get("/api/me").json()["csrf_token"]


# Every protected route and the roles that may use it (admin always may).
ROUTES = [
    ("GET", "/api/channels", {"clerk", "analyst", "auditor", "release"}),
    ("GET", "/api/messages", {"clerk", "analyst"}),
    ("GET", "/api/errors", {"clerk", "analyst"}),
    ("GET", "/api/audit", {"auditor"}),
    ("GET", "/api/patients?family=X", {"clerk"}),
    ("GET", "/api/documents", {"clerk"}),
    ("GET", "/api/deficiencies", {"clerk"}),
    ("GET", "/api/me", {"clerk", "analyst", "auditor", "release"}),
]


@pytest.mark.parametrize("method,path,allowed", ROUTES)
def test_roles_per_route(client, tokens, method, path, allowed):
    """No credentials: 401 JSON; each role gets 200 where allowed and 403 elsewhere."""
    r = client.request(method, path)
    assert r.status_code == 401 and r.json()["detail"] == "authentication required"
    assert r.headers["www-authenticate"] == "Bearer"
    for role in users.ROLES:
        r = client.request(method, path, headers=h(tokens[role]))
        expected = 200 if role in allowed | {"admin"} else 403
        assert r.status_code == expected, (role, path, r.text)


def test_bad_or_revoked_token_is_401(client, engine, tokens):
    """A made-up token, or one of a disabled user, is refused."""
    assert client.get("/api/me", headers=h("ie_nope")).status_code == 401
    assert client.get("/api/me", headers=h(tokens["clerk"])).status_code == 200
    with engine.begin() as conn:
        users.set_disabled(conn, "clerk1", True, now=NOW)
    assert client.get("/api/me", headers=h(tokens["clerk"])).status_code == 401


def test_token_auth_needs_no_csrf(client, engine, tokens):
    """Bearer-token POSTs are not CSRF-checked (no cookie involved)."""
    r = client.post("/api/errors/bulk", headers=h(tokens["clerk"]), json={"action": "retry", "ids": [123]})
    assert r.status_code == 200 and r.json()["failed"][0]["id"] == 123


def test_login_sets_session_cookie_and_audits(client, engine):
    """POST /login with the right password sets an HttpOnly session cookie and redirects."""
    make_user(engine, "ann", "clerk")
    r = login(client, "ann", next="/api/me")
    assert r.status_code == 303 and r.headers["location"] == "/api/me"
    cookie = r.headers["set-cookie"]
    assert "interface_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    me = client.get("/api/me").json()
    assert me["name"] == "ann" and me["role"] == "clerk" and len(me["csrf_token"]) > 20
    with engine.connect() as conn:
        actions = [r.action for r in conn.execute(select(audit.c.action).where(audit.c.user == "ann"))]
    assert "login" in actions


def test_wrong_password_and_unknown_user_rejected(client, engine):
    """A wrong password or unknown user re-shows the form with 401 and sets no session cookie."""
    make_user(engine, "ann", "clerk")
    for name, pw in (("ann", "wrong password!"), ("nobody", PASSWORD), ("ann", "")):
        r = login(client, name, pw)
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        assert "interface_session" not in r.headers.get("set-cookie", "")  # no session cookie
    assert client.get("/api/me").status_code == 401


def test_open_redirect_refused(client, engine):
    """``next`` may only be a local path."""
    make_user(engine, "ann", "clerk")
    assert login(client, "ann", next="https://evil.example/").headers["location"] == "/"
    assert login(client, "ann", next="//evil.example/").headers["location"] == "/"


def test_csrf_required_for_cookie_posts(client, engine, tokens):
    """With a session cookie, POSTs without the CSRF token are 403; with the header or form field they pass."""
    make_user(engine, "ann", "clerk")
    login(client, "ann")
    body = {"action": "retry", "ids": [5]}
    r = client.post("/api/errors/bulk", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = client.post("/api/errors/bulk", json=body, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    r = client.post("/api/errors/bulk", json=body, headers={"X-CSRF-Token": csrf_of(client)})
    assert r.status_code == 200
    # a form post (the HTML console) carries it as a field; logout is such a form
    assert client.post("/logout", data={"csrf_token": "wrong"}, follow_redirects=False).status_code == 403
    r = client.post("/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_logout_ends_the_session_server_side(client, engine):
    """After logout the old cookie value no longer works, even if replayed."""
    make_user(engine, "ann", "clerk")
    login(client, "ann")
    sid = client.cookies.get("interface_session")
    client.post("/logout", headers={"X-CSRF-Token": csrf_of(client)}, follow_redirects=False)
    client.cookies.clear()
    client.cookies.set("interface_session", sid)
    assert client.get("/api/me").status_code == 401


def test_password_change_ends_sessions(client, engine):
    """Changing the password logs the user out everywhere."""
    make_user(engine, "ann", "clerk")
    login(client, "ann")
    assert client.get("/api/me").status_code == 200
    with engine.begin() as conn:
        users.set_password(conn, "ann", "another long password", now=NOW)
    assert client.get("/api/me").status_code == 401


def test_session_expires(client, engine, clock):
    """A session older than its lifetime is refused."""
    make_user(engine, "ann", "clerk")
    login(client, "ann")
    clock.now = NOW + users.SESSION_LIFETIME
    assert client.get("/api/me").status_code == 401


def test_html_requests_redirect_to_login(client):
    """A browser asking for an HTML page without a session is sent to /login?next=..."""
    r = client.get("/?x=1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F%3Fx%3D1"
    page = client.get("/login")
    assert page.status_code == 200 and re.search(r'name="password"', page.text)
    # API paths answer JSON even to browsers
    assert client.get("/api/messages", headers={"Accept": "text/html"}).status_code == 401


def test_webthread_serves_on_a_free_port(engine):
    """WebThread binds port 0 to a free port, serves the app, and stops."""
    web = WebThread(create_app(engine), "127.0.0.1", 0)
    web.start()
    try:
        assert web.port > 0
        r = httpx.get(f"http://127.0.0.1:{web.port}/api/health", timeout=5)
        assert r.status_code == 200 and r.json()["database"] == "ok"
    finally:
        web.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{web.port}/api/health", timeout=2)


def test_interface_web_serves_the_console_as_its_own_process(db_url, engine, tmp_path):
    """`interface web --db URL --port P` serves the API against the same database."""
    import os
    import socket
    import subprocess
    import sys
    import time

    token = make_user(engine, "ops", "analyst")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "interface.ops.cli",
            "web",
            "--db",
            db_url,
            "--port",
            str(port),
            "--channels",
            str(tmp_path / "none"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/channels", headers=h(token), timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "interface web did not start"
                time.sleep(0.1)  # polling a real subprocess, bounded by the deadline
        assert r.status_code == 200 and r.json() == {"channels": [], "runtime": False}
    finally:
        proc.terminate()
        proc.wait(10)


def test_login_form_is_csrf_protected(client, engine, tokens):
    """A POST /login without the form's token (e.g. from another site) logs nobody in."""
    r = client.post("/login", data={"username": "clerk1", "password": PASSWORD}, follow_redirects=False)
    assert (
        r.status_code == 403
        and "expired" in r.text
        and "interface_session" not in r.headers.get("set-cookie", "")
    )
    client.get("/login")  # cookie set, but a forged form carries another token
    r = client.post(
        "/login",
        data={"username": "clerk1", "password": PASSWORD, "login_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert login(client, "clerk1").status_code == 303


def test_expired_session_sends_htmx_refreshes_to_the_login_page(client):
    """The dashboard's htmx refresh without a session gets HX-Redirect to the login form (with the
    page it was on), not a login form swapped into the page."""
    r = client.get(
        "/dashboard/channels",
        follow_redirects=False,
        headers={"Accept": "*/*", "HX-Request": "true", "HX-Current-URL": "http://testserver/?tab=1"},
    )
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/login?next=%2F%3Ftab%3D1"
