"""Directory sign-in against a real OpenLDAP server (Debian's slapd on a loopback port, started
per test by ``tests/slapd_kit.py``): the mapped role, a group change at the next sign-in, wrong
passwords, users in no mapped group, a directory outage (local break-glass still works), LDAP
injection in the name, the ``directory-test`` command and ``interface check``."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select

from interface.config import directory as dirconfig
from interface.desk import users
from interface.desk.directory import Directory
from interface.ops import cli, directory_cli
from interface.store.schema import audit
from interface.web.app import create_app
from tests.slapd_kit import PASSWORDS, free_port, slapd  # noqa: F401  (fixture)
from tests.slapd_kit import directory_yaml as make_yaml
from tests.test_auth import login
from tests.test_web_api import NOW, PASSWORD, TestClient, channels, clock, fast_hashing  # noqa: F401


def directory_for(tmp_path, url: str) -> Directory:
    f = tmp_path / "directory.yaml"
    f.write_text(make_yaml(url))
    return Directory(dirconfig.load_directory(f))


@pytest.fixture
def directory(slapd, tmp_path):
    return directory_for(tmp_path, slapd.url)


@pytest.fixture
def client(engine, channels, clock, directory):
    app = create_app(engine, channels=channels, clock=clock, directory=directory)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def me(client):
    r = client.get("/api/me")
    return r.json() if r.status_code == 200 else None


def record(engine, name):
    with engine.connect() as conn:
        return conn.execute(select(users.users).where(users.users.c.name == name)).first()


def sign_out(client):
    client.post("/logout", headers={"X-CSRF-Token": me(client)["csrf_token"]})
    assert me(client) is None


def test_directory_user_signs_in_with_the_mapped_role(client, engine):
    """alice (interface-clerks) signs in with her directory password and is a clerk; a local record
    marked as the directory's is made, with no usable local password; the sign-in is audited."""
    r = login(client, "alice", PASSWORDS["alice"], next="/api/me")
    assert r.status_code == 303
    assert me(client)["name"] == "alice" and me(client)["role"] == "clerk"
    row = record(engine, "alice")
    assert row.source == "directory" and not row.disabled and row.password_hash == users.DIRECTORY_PASSWORD
    with engine.connect() as conn:
        details = [r.detail for r in conn.execute(select(audit).where(audit.c.action == "login"))]
    assert details and "directory" in details[-1]
    sign_out(client)
    # root is in interface-admins and interface-clerks: the first rule (admin) wins
    assert login(client, "Root", PASSWORDS["root"]).status_code == 303
    assert me(client)["name"] == "root" and me(client)["role"] == "admin"  # one name, whatever the case


def test_a_group_change_changes_the_role_at_the_next_sign_in(client, engine, slapd):
    assert login(client, "alice", PASSWORDS["alice"]).status_code == 303
    assert me(client)["role"] == "clerk"
    sign_out(client)
    slapd.move("alice", "interface-clerks", "interface-analysts")
    assert login(client, "alice", PASSWORDS["alice"]).status_code == 303
    assert me(client)["role"] == "analyst" and record(engine, "alice").role == "analyst"
    # out of every mapped group: refused, the local record disabled and its session ended
    slapd.move("alice", "interface-analysts", None)
    other = TestClient(client.app, base_url="http://testserver")
    with other:
        r = login(other, "alice", PASSWORDS["alice"])
        assert r.status_code == 401 and "no role in this console" in r.text
    assert record(engine, "alice").disabled and record(engine, "alice").disabled_by == "directory"
    assert me(client) is None
    # back in a group: the directory's yes enables the record again
    slapd.move("alice", None, "interface-clerks")
    assert login(client, "alice", PASSWORDS["alice"]).status_code == 303
    assert me(client)["role"] == "clerk" and not record(engine, "alice").disabled


def test_wrong_password_and_users_in_no_mapped_group_are_refused(client, engine):
    for name, pw in (("alice", "not-alices-password"), ("nobody", "whatever-password"), ("alice", "")):
        r = login(client, name, pw)
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        assert me(client) is None
    r = login(client, "carol", PASSWORDS["carol"])  # bound, but only in payroll
    assert r.status_code == 401 and "no role in this console" in r.text and me(client) is None
    assert (
        record(engine, "alice") is None
        and record(engine, "nobody") is None
        and record(engine, "carol") is None
    )


def test_an_administrator_disabled_directory_user_stays_out(client, engine):
    assert login(client, "alice", PASSWORDS["alice"]).status_code == 303
    with engine.begin() as conn:
        users.set_disabled(conn, "alice", True)
    assert me(client) is None
    assert login(client, "alice", PASSWORDS["alice"]).status_code == 401  # the directory's yes is not enough


def test_directory_down_local_break_glass_still_signs_in(client, engine, slapd):
    """The directory stops: a directory user gets a clear 503 message, the local admin signs in."""
    with engine.begin() as conn:
        users.add_user(conn, "breakglass", "admin", PASSWORD, now=NOW)
    slapd.stop()
    r = login(client, "alice", PASSWORDS["alice"])
    assert r.status_code == 503 and "directory cannot be reached" in r.text and "Local accounts" in r.text
    assert me(client) is None
    assert login(client, "breakglass", PASSWORD, next="/api/me").status_code == 303
    assert me(client)["role"] == "admin"


def test_local_users_win_for_their_own_names(client, engine):
    """A local ``bob`` signs in with its local password only; bob's directory password is refused
    (the directory is not asked), and so is ``BOB``."""
    with engine.begin() as conn:
        users.add_user(conn, "bob", "auditor", PASSWORD, now=NOW)
    assert login(client, "bob", PASSWORDS["bob"]).status_code == 401
    assert login(client, "BOB", PASSWORDS["bob"]).status_code == 401
    assert login(client, "bob", PASSWORD).status_code == 303 and me(client)["role"] == "auditor"
    assert record(engine, "bob").source == "local"


@pytest.mark.parametrize("name", ["al*", "*", "alice)(uid=*", "*)(|(uid=*", "alice\\2a", "al\x00ice"])
def test_ldap_injection_in_the_name_is_a_name(client, engine, name):
    """Filter characters in the name are escaped (escape_filter_chars): ``al*`` with alice's
    password does not sign in as anyone, and no record is made."""
    r = login(client, name, PASSWORDS["alice"])
    assert r.status_code == 401 and me(client) is None
    with engine.connect() as conn:
        assert conn.execute(select(users.users.c.name)).all() == []


def test_limits_apply_to_directory_sign_ins(client):
    for _ in range(5):
        assert login(client, "alice", "wrong-password-again").status_code == 401
    r = login(client, "alice", PASSWORDS["alice"])
    assert r.status_code == 429 and "Retry-After" in r.headers


def test_directory_users_have_no_local_password_role_or_tokens(client, engine):
    assert login(client, "alice", PASSWORDS["alice"]).status_code == 303
    with engine.begin() as conn:
        for change in (
            lambda: users.set_password(conn, "alice", "a brand new local password"),
            lambda: users.set_role(conn, "alice", "admin"),
            lambda: users.new_token(conn, "alice"),
        ):
            with pytest.raises(users.UserConflict, match="directory"):
                change()
    assert [u["source"] for u in users.list_users(engine.connect())] == ["directory"]


def test_directory_test_command(slapd, tmp_path):
    f = tmp_path / "directory.yaml"
    f.write_text(make_yaml(slapd.url))
    out = io.StringIO()
    code = directory_cli.main(
        ["root", "--directory", str(f), "--password-stdin"],
        stdin=io.StringIO(PASSWORDS["root"] + "\n"),
        out=out,
    )
    assert code == 0 and "root would sign in as admin" in out.getvalue()
    assert "group: cn=interface-admins,ou=groups,dc=hospital,dc=example" in out.getvalue()
    assert PASSWORDS["root"] not in out.getvalue()
    out = io.StringIO()
    code = directory_cli.main(
        ["carol", "--directory", str(f), "--password-stdin"],
        stdin=io.StringIO(PASSWORDS["carol"] + "\n"),
        out=out,
    )
    assert code == 1 and "no_role" in out.getvalue() and "would not sign in" in out.getvalue()
    slapd.stop()
    code = directory_cli.main(["root", "--directory", str(f), "--password-stdin"], stdin=io.StringIO("x\n"))
    assert code == 2


def test_servers_are_tried_in_order(slapd, tmp_path):
    """A first server that refuses connections passes to the next."""
    f = tmp_path / "directory.yaml"
    dead = f"ldap://127.0.0.1:{free_port()}"
    f.write_text(
        make_yaml(slapd.url).replace(f'servers: ["{slapd.url}"]', f'servers: ["{dead}", "{slapd.url}"]')
    )
    answer = Directory(dirconfig.load_directory(f)).authenticate("bob", PASSWORDS["bob"])
    assert answer.role == "analyst" and answer.server == slapd.url


def test_dn_template_and_member_of(slapd, tmp_path):
    """The other ways: the user's DN from a template, searching as a service account whose password
    comes from the environment."""
    f = tmp_path / "directory.yaml"
    text = make_yaml(slapd.url).replace(
        '  filter: "(&(objectClass=inetOrgPerson)(uid={name}))"\n',
        '  dn_template: "uid={name},ou=people,dc=hospital,dc=example"\n',
    )
    text = text.replace('users:\n  base: "ou=people,dc=hospital,dc=example"\n', "users:\n")
    text += "service_account:\n  dn: cn=admin,dc=hospital,dc=example\n  password_env: TEST_LDAP_PW\n"
    f.write_text(text)
    settings = dirconfig.load_directory(f)
    from tests.slapd_kit import ROOT_PW

    d = Directory(settings, environ={"TEST_LDAP_PW": ROOT_PW})
    assert d.authenticate("alice", PASSWORDS["alice"]).role == "clerk"
    assert d.authenticate("alice,ou=x", PASSWORDS["alice"]).outcome == "refused"  # escaped into the RDN
    with pytest.raises(Exception, match="TEST_LDAP_PW"):
        Directory(settings, environ={}).authenticate("alice", PASSWORDS["alice"])


def test_check_reports_directory_problems_with_file_and_line(tmp_path, capsys):
    f = tmp_path / "directory.yaml"
    f.write_text(
        "servers: [http://dc1.example]\n"
        "users:\n  base: ou=people\n  filter: (uid=x)\n"
        "groups:\n  attribute: memberOf\n"
        "roles:\n  - group: admins\n    role: superuser\n"
        "timeout: 3\n"
    )
    code = cli.main(["check", str(f)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert any(re.match(rf"{re.escape(str(f))}:1: .*ldap://HOST", line) for line in lines), lines
    assert any(line.startswith(f"{f}:2: users: ") and "{name}" in line for line in lines), lines
    assert any(line.startswith(f"{f}:9: ") and "role must be one of" in line for line in lines), lines
    assert any(line.startswith(f"{f}:10: ") and "unknown key 'timeout'" in line for line in lines), lines


def test_role_names_are_the_consoles():
    assert dirconfig.ROLE_NAMES == users.ROLES
