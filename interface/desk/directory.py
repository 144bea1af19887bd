"""Signing a console user in against the hospital's directory: an LDAP bind with ldap3.

:class:`Directory` answers one question, :meth:`Directory.authenticate`: does this name with this
password belong to someone the directory knows, and which console role do their groups give? The
settings are :class:`interface.config.directory.DirectorySettings` (``directory.yaml``).

1. The user's entry: the DN from ``users.dn_template``, or a search under ``users.base`` with
   ``users.filter`` (as the service account, else anonymously); the name is escaped for a DN
   (``escape_rdn``) or a filter (``escape_filter_chars``), so ``*)(uid=*`` is a name, not a query.
2. A bind as that DN with the password, on its own connection. An empty password is refused
   before any bind (LDAP treats it as an anonymous bind, which "succeeds").
3. The user's groups (a search with ``groups.filter``, or the DNs in ``groups.attribute`` of
   the entry) and the role of the first ``roles`` rule they match.

Servers are tried in file order; one that cannot be reached (refused, timed out, StartTLS
failed) passes to the next; when none answers, :class:`DirectoryDown` (the console says so, and
local accounts still sign in). ``ldap://`` servers are upgraded with StartTLS unless
``start_tls: false``; certificates are checked (``ca_file``, else the system's CAs).

Nothing here writes to the database or logs a password or a name (outcomes and servers only).
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from interface.config.directory import DirectorySettings, load_optional

log = logging.getLogger("interface.desk.directory")

# What ldap3 raises when a server is not there or stops answering (not: a wrong password).
_UNREACHABLE = (
    lx.LDAPCommunicationError,
    lx.LDAPStartTLSError,
    lx.LDAPResponseTimeoutError,
    lx.LDAPSSLConfigurationError,
    OSError,
)

OK, REFUSED, UNKNOWN, NO_ROLE = "ok", "refused", "unknown", "no_role"


class DirectoryDown(Exception):
    """No directory server could be reached (or the service account cannot bind)."""


@dataclass(frozen=True)
class Answer:
    """What the directory said about a sign-in.

    ``outcome``: ``ok`` (bound, and ``role`` from the groups), ``refused`` (wrong password, or an
    account the directory will not bind), ``unknown`` (no such user), ``no_role`` (bound, but in
    no group that gives a role). ``reason``: words for ``interface users directory-test``."""

    outcome: str
    reason: str
    role: str | None = None
    dn: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)
    server: str | None = None


def _service_password(settings: DirectorySettings, environ) -> str | None:
    account = settings.service_account
    if account is None:
        return None
    value = environ.get(account.password_env)
    if value is None:
        raise DirectoryDown(
            f"environment variable {account.password_env} (the service account's password) is not set"
        )
    return value


class Directory:
    """The hospital directory of ``settings``. Thread-safe: every call opens its own connections."""

    def __init__(self, settings: DirectorySettings, environ=None):
        self.settings = settings
        self._environ = os.environ if environ is None else environ

    def _server(self, url: str) -> ldap3.Server:
        parts = urlsplit(url)
        secure = parts.scheme == "ldaps"
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.settings.ca_file)
        return ldap3.Server(
            parts.hostname,
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=self.settings.connect_timeout_seconds,
        )

    def _connect(self, server: ldap3.Server, dn: str | None, password: str | None) -> ldap3.Connection:
        """An open connection (StartTLS done if asked), bound as ``dn`` or anonymous; check
        ``.bound``. Raises one of :data:`_UNREACHABLE` when the server does not answer."""
        conn = ldap3.Connection(
            server,
            user=dn,
            password=password,
            auto_bind=ldap3.AUTO_BIND_NONE,
            receive_timeout=max(1, math.ceil(self.settings.timeout_seconds)),  # ldap3 wants whole seconds
            read_only=True,
            raise_exceptions=False,
        )
        conn.open()
        if not server.ssl and self.settings.start_tls and not conn.start_tls():
            conn.unbind()
            raise lx.LDAPStartTLSError("StartTLS refused")
        if dn is not None:
            conn.bind()
        return conn

    def authenticate(self, name: str, password: str) -> Answer:
        """What the directory says about ``name`` signing in with ``password`` (DirectoryDown when
        no server answers)."""
        if not name or not password:
            return Answer(REFUSED, "an empty password is never sent (it would be an anonymous bind)")
        service_password = _service_password(self.settings, self._environ)
        problems = []
        for url in self.settings.servers:
            try:
                answer = self._authenticate_on(url, name, password, service_password)
            except _UNREACHABLE as exc:
                log.warning("directory server %s cannot be reached: %s", url, type(exc).__name__)
                problems.append(f"{url}: {type(exc).__name__}")
                continue
            log.info("directory sign-in via %s: %s", url, answer.outcome)
            return answer
        raise DirectoryDown("no directory server answers (" + "; ".join(problems) + ")")

    def _authenticate_on(self, url: str, name: str, password: str, service_password: str | None) -> Answer:
        s = self.settings
        server = self._server(url)
        searcher = None
        if s.service_account is not None or s.users.dn_template is None or s.groups.filter is not None:
            account = s.service_account
            searcher = self._connect(server, account.dn if account else None, service_password)
            if account is not None and not searcher.bound:
                searcher.unbind()
                raise DirectoryDown(f"{url}: the service account {account.dn!r} cannot bind")
        try:
            if s.users.dn_template is not None:
                dn = s.users.dn_template.replace("{name}", escape_rdn(name))
                entry_groups: list[str] | None = None
            else:
                assert searcher is not None and s.users.filter is not None and s.users.base is not None
                searcher.search(
                    s.users.base,
                    s.users.filter.replace("{name}", escape_filter_chars(name)),
                    search_scope=ldap3.SUBTREE if s.users.scope == "subtree" else ldap3.LEVEL,
                    attributes=[s.groups.attribute] if s.groups.attribute else [],
                    size_limit=2,
                )
                found = [e for e in searcher.response or [] if e.get("type") == "searchResEntry"]
                if not found:
                    return Answer(UNKNOWN, "no such user in the directory", server=url)
                if len(found) > 1:
                    return Answer(REFUSED, "the user filter finds more than one entry", server=url)
                dn = found[0]["dn"]
                entry_groups = _values(found[0], s.groups.attribute)
            user_conn = self._connect(server, dn, password)
            try:
                if not user_conn.bound:
                    code = (user_conn.result or {}).get("description", "refused")
                    return Answer(REFUSED, f"the directory refused the bind ({code})", dn=dn, server=url)
                groups = self._groups(searcher or user_conn, user_conn, dn, name, entry_groups)
            finally:
                user_conn.unbind()
        finally:
            if searcher is not None:
                searcher.unbind()
        role = s.role_for(groups)
        if role is None:
            return Answer(
                NO_ROLE, "in no group that gives a console role", dn=dn, groups=tuple(groups), server=url
            )
        return Answer(OK, f"role {role}", role=role, dn=dn, groups=tuple(groups), server=url)

    def _groups(self, searcher, user_conn, dn: str, name: str, entry_groups: list[str] | None) -> list[str]:
        g = self.settings.groups
        if g.attribute is not None:
            if entry_groups is None:  # the entry was not searched (dn_template): read it as the user
                user_conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[g.attribute])
                entries = [e for e in user_conn.response or [] if e.get("type") == "searchResEntry"]
                entry_groups = _values(entries[0], g.attribute) if entries else []
            return entry_groups
        assert g.filter is not None and g.base is not None
        query = g.filter.replace("{dn}", escape_filter_chars(dn)).replace("{name}", escape_filter_chars(name))
        searcher.search(g.base, query, search_scope=ldap3.SUBTREE, attributes=[])
        return [e["dn"] for e in searcher.response or [] if e.get("type") == "searchResEntry"]


def _values(entry: dict, attribute: str | None) -> list[str]:
    if attribute is None:
        return []
    raw = (entry.get("attributes") or {}).get(attribute) or []
    return [str(v) for v in (raw if isinstance(raw, list) else [raw])]


def from_file(path) -> Directory | None:
    """The directory of ``directory.yaml`` at ``path``, or None when there is no such file (local
    users only). ConfigError (``file:line:``) for a file with problems."""
    settings = load_optional(path)
    return Directory(settings) if settings is not None else None
