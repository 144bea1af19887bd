"""A real OpenLDAP server for the directory sign-in tests: Debian's slapd on a loopback port.

:func:`start_slapd` writes a ``slapd.conf`` (mdb database under ``tmp_path``, the core, cosine and
inetOrgPerson schemas), loads :data:`DIRECTORY_LDIF` with ``slapadd``, starts
``slapd -f slapd.conf -h ldap://127.0.0.1:PORT/`` as the current user and waits (with a deadline)
for its own readiness line ``slapd starting`` on stderr (``-d 32768``: only the messages slapd
always prints), then for the port to accept (bounded retry: the line comes just before listen()). :class:`Slapd` changes the directory as its administrator (``move``) and stops the
server (``stop``). Skips when slapd is not installed (``make system-deps``).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
import pytest

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
SUFFIX = "dc=hospital,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret-for-tests"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
READY_SECONDS = 20.0

# name -> password of the directory's users (plain userPassword: slapd compares it as given)
PASSWORDS = {
    "alice": "alice-directory-pw",
    "bob": "bob-directory-pw",
    "carol": "carol-directory-pw",
    "root": "root-directory-pw",
}
MEMBERS = {
    "interface-admins": ["root"],
    "interface-analysts": ["bob"],
    "interface-clerks": ["alice", "root"],
    "payroll": ["carol"],  # a group that gives no console role
}


def user_dn(name: str) -> str:
    return f"uid={name},{PEOPLE}"


def group_dn(group: str) -> str:
    return f"cn={group},{GROUPS}"


def _ldif() -> str:
    out = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: hospital\no: Hospital\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
    ]
    for name, pw in PASSWORDS.items():
        out.append(
            f"dn: {user_dn(name)}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: {name}\n"
            f"userPassword: {pw}\n"
        )
    for group, names in MEMBERS.items():
        out.append(
            f"dn: {group_dn(group)}\nobjectClass: groupOfNames\ncn: {group}\n"
            + "".join(f"member: {user_dn(n)}\n" for n in names)
        )
    return "\n".join(out)


DIRECTORY_LDIF = _ldif()

SLAPD_CONF = """\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
modulepath {modules}
moduleload back_mdb
pidfile {run}/slapd.pid
argsfile {run}/slapd.args

database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {data}
access to attrs=userPassword by anonymous auth by self read by * none
access to * by * read
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Slapd:
    port: int
    process: subprocess.Popen
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def admin(self) -> ldap3.Connection:
        return ldap3.Connection(
            ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE),
            user=ROOT_DN,
            password=ROOT_PW,
            auto_bind=True,
            receive_timeout=10,
        )

    def move(self, name: str, from_group: str | None, to_group: str | None) -> None:
        """Take ``name`` out of one group and/or put it into another (as the directory's admin)."""
        conn = self.admin()
        try:
            if from_group:
                assert conn.modify(group_dn(from_group), {"member": [(ldap3.MODIFY_DELETE, [user_dn(name)])]})
            if to_group:
                assert conn.modify(group_dn(to_group), {"member": [(ldap3.MODIFY_ADD, [user_dn(name)])]})
        finally:
            conn.unbind()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_slapd(tmp_path: Path) -> Slapd:
    if not (SLAPD.exists() and SLAPADD.exists() and (SCHEMA / "core.schema").exists()):
        pytest.skip("slapd is not installed (make system-deps)")
    base = tmp_path / "slapd"
    data, run = base / "data", base / "run"
    data.mkdir(parents=True)
    run.mkdir()
    conf = base / "slapd.conf"
    conf.write_text(
        SLAPD_CONF.format(
            schema=SCHEMA, modules=MODULES, run=run, suffix=SUFFIX, rootdn=ROOT_DN, rootpw=ROOT_PW, data=data
        )
    )
    ldif = base / "directory.ldif"
    ldif.write_text(DIRECTORY_LDIF)
    subprocess.run(
        [str(SLAPADD), "-f", str(conf), "-l", str(ldif)], check=True, capture_output=True, timeout=60
    )
    port = free_port()
    proc = subprocess.Popen(
        [str(SLAPD), "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "32768"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Slapd(port, proc)
    ready = threading.Event()

    def drain() -> None:  # slapd's stderr, read to the end (a full pipe would block it)
        assert proc.stderr is not None
        for line in proc.stderr:
            server.log.append(line.rstrip())
            if "slapd starting" in line:
                ready.set()
        ready.set()  # it ended: the wait below stops waiting and the check says why

    threading.Thread(target=drain, name="slapd-stderr", daemon=True).start()
    if not ready.wait(READY_SECONDS) or proc.poll() is not None:
        server.stop()
        raise RuntimeError("slapd did not start:\n" + "\n".join(server.log))
    _answers(server)
    return server


def _answers(server: Slapd) -> None:
    """slapd prints its readiness line just before its listener thread calls listen(): retry the
    connection until it is accepted, with a deadline (a few milliseconds in practice)."""
    deadline = time.monotonic() + READY_SECONDS
    pause = threading.Event()
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline or server.process.poll() is not None:
                server.stop()
                raise RuntimeError("slapd does not accept connections:\n" + "\n".join(server.log)) from None
            pause.wait(0.005)  # bounded by the deadline above
    server.admin().unbind()  # and it answers a bind


@pytest.fixture
def slapd(tmp_path):
    server = start_slapd(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def directory_yaml(url: str, **extra: str) -> str:
    """A ``directory.yaml`` for this directory (search as anonymous, groups by member)."""
    text = f"""\
servers: ["{url}"]
start_tls: false
connect_timeout_seconds: 3
timeout_seconds: 5
users:
  base: "{PEOPLE}"
  filter: "(&(objectClass=inetOrgPerson)(uid={{name}}))"
groups:
  base: "{GROUPS}"
  filter: "(&(objectClass=groupOfNames)(member={{dn}}))"
roles:
  - group: "{group_dn("interface-admins")}"
    role: admin
  - group: interface-analysts
    role: analyst
  - group: interface-clerks
    role: clerk
"""
    for key, value in extra.items():
        text += f"{key}: {value}\n"
    return text
