"""The hospital directory (LDAP) that console users sign in against: the schema of ``directory.yaml``.

Where: ``directory.yaml`` beside the channels directory (``interface run`` / ``interface web``
read it at start if it is there; none: local users only), ``--directory FILE`` for
``interface users directory-test``; ``interface check`` reports its problems as
``file:line: message`` like every other config file. Example::

    servers: [ldaps://dc1.hospital.example, ldap://dc2.hospital.example]
    start_tls: true                  # ldap:// URLs are upgraded with StartTLS (the default)
    ca_file: /etc/ssl/certs/hospital-ca.pem
    connect_timeout_seconds: 3
    timeout_seconds: 5
    service_account:                 # optional: searches as this account (else anonymously)
      dn: cn=interface,ou=services,dc=hospital,dc=example
      password_env: INTERFACE_DIRECTORY_PASSWORD
    users:
      base: ou=people,dc=hospital,dc=example
      filter: "(&(objectClass=inetOrgPerson)(uid={name}))"   # or dn_template: "uid={name},ou=..."
    groups:
      base: ou=groups,dc=hospital,dc=example
      filter: "(&(objectClass=groupOfNames)(member={dn}))"
    roles:                           # the first rule whose group the user is in gives the role
      - {group: "cn=interface-admins,ou=groups,dc=hospital,dc=example", role: admin}
      - {group: interface-analysts, role: analyst}   # a group's cn alone also matches
      - {group: interface-clerks, role: clerk}

The role is the **first** matching rule's, in file order (the order is the priority: roles are not
a ladder, clerks and analysts see different things, so "the highest" would mean nothing but
"admin first"). A user in no listed group is refused. ``{name}`` and ``{dn}`` are escaped before
they go into a filter or a DN (no LDAP injection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from interface.config.yamlfile import ConfigError, Strict, load_yaml, validate

# The console's roles (interface.desk.users.ROLES; a test keeps the two equal: config is below desk)
ROLE_NAMES = ("clerk", "analyst", "admin", "auditor", "release")
FILE_NAME = "directory.yaml"


class ServiceAccount(Strict):
    """The account the console searches the directory as; its password from an environment variable
    (never in the file)."""

    dn: str = Field(min_length=3)
    password_env: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class UserLookup(Strict):
    """How a sign-in name becomes the user's entry: a search (``base`` + ``filter``) or a DN made
    from a template (``dn_template``), exactly one of the two."""

    base: str | None = None
    filter: str | None = None
    dn_template: str | None = None
    scope: Literal["subtree", "level"] = "subtree"

    @model_validator(mode="after")
    def _one_way(self):
        if (self.filter is None) == (self.dn_template is None):
            raise ValueError("give either filter (with base) or dn_template, not both or neither")
        if self.filter is not None:
            if not self.base:
                raise ValueError("filter needs base (where to search)")
            if "{name}" not in self.filter:
                raise ValueError("filter must contain {name} (the sign-in name)")
            if not (self.filter.startswith("(") and self.filter.endswith(")")):
                raise ValueError("filter must be in parentheses, e.g. (uid={name})")
        if self.dn_template is not None and "{name}" not in self.dn_template:
            raise ValueError("dn_template must contain {name} (the sign-in name)")
        return self


class GroupLookup(Strict):
    """The user's groups: a search (``base`` + ``filter`` with ``{dn}`` and/or ``{name}``) or an
    attribute of the user's own entry listing group DNs (``attribute: memberOf``)."""

    base: str | None = None
    filter: str | None = None
    attribute: str | None = None

    @model_validator(mode="after")
    def _one_way(self):
        if (self.filter is None) == (self.attribute is None):
            raise ValueError(
                "give either filter (with base) or attribute (e.g. memberOf), not both or neither"
            )
        if self.filter is not None:
            if not self.base:
                raise ValueError("filter needs base (where to search)")
            if "{dn}" not in self.filter and "{name}" not in self.filter:
                raise ValueError("filter must contain {dn} or {name} (the user)")
            if not (self.filter.startswith("(") and self.filter.endswith(")")):
                raise ValueError("filter must be in parentheses, e.g. (member={dn})")
        return self


class RoleRule(Strict):
    """Members of ``group`` (a DN, or a cn alone) get ``role``."""

    group: str = Field(min_length=1)
    role: str

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ROLE_NAMES:
            raise ValueError(f"role must be one of {', '.join(ROLE_NAMES)}")
        return v

    def matches(self, group_dn: str) -> bool:
        """Whether a group DN is this rule's group (DNs compared without case or spaces after
        commas; a rule without ``=`` is a cn)."""
        if "=" in self.group:
            return normal_dn(group_dn) == normal_dn(self.group)
        first = group_dn.split(",", 1)[0]
        attr, _, value = first.partition("=")
        return attr.strip().lower() == "cn" and value.strip().casefold() == self.group.strip().casefold()


def normal_dn(dn: str) -> str:
    return ",".join(part.strip() for part in dn.split(",")).casefold()


class DirectorySettings(Strict):
    """``directory.yaml``: where the directory is and how its groups become console roles."""

    servers: list[str] = Field(min_length=1)
    start_tls: bool = True
    ca_file: str | None = None
    connect_timeout_seconds: float = Field(3.0, gt=0, le=60)
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    service_account: ServiceAccount | None = None
    users: UserLookup
    groups: GroupLookup
    roles: list[RoleRule] = Field(min_length=1)

    @field_validator("servers")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
                raise ValueError(f"{url!r}: a server is ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
            try:
                parts.port
            except ValueError:
                raise ValueError(f"{url!r}: the port must be a number") from None
            if parts.path not in ("", "/") or parts.query:
                raise ValueError(f"{url!r}: a server URL has no path or query")
        return v

    @model_validator(mode="after")
    def _ca_file(self):
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise ValueError(f"ca_file {self.ca_file!r}: no such file")
        return self

    def role_for(self, group_dns: list[str]) -> str | None:
        """The role of the first rule one of these groups matches, or None."""
        for rule in self.roles:
            if any(rule.matches(g) for g in group_dns):
                return rule.role
        return None


def load_directory(path: str | Path) -> DirectorySettings:
    """Read and check ``directory.yaml`` (ConfigError with ``file:line:`` for every problem)."""
    doc = load_yaml(path, keep_going=True)
    if not isinstance(doc.data, dict):
        raise ConfigError([f"{doc.where()}: expected a mapping (servers:, users:, groups:, roles:)"])
    return validate(DirectorySettings, doc)


def load_optional(path: str | Path | None) -> DirectorySettings | None:
    """The settings in ``path`` if that file exists, else None (local users only)."""
    if path is None or not Path(path).is_file():
        return None
    return load_directory(path)


def is_checked(path: str | Path) -> bool:
    """Whether ``interface check`` reads ``path`` as directory settings: an existing
    ``directory*.yaml`` file outside a channels directory."""
    p = Path(path)
    return (
        p.is_file()
        and p.name.startswith("directory")
        and p.suffix in (".yaml", ".yml")
        and "channels" not in p.resolve().parent.parts
    )


def check_paths(paths: list[str]) -> list[str]:
    """``interface check``: every problem of these directory files."""
    out: list[str] = []
    for p in paths:
        try:
            load_directory(p)
        except ConfigError as exc:
            out.extend(exc.problems)
    return out
