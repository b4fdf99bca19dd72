"""API tokens and what they allow: roles bound to projects.

A token is `tf_<id>_<secret>`. Only the sha256 of the whole text is stored; a request's token
is found by its id and compared in constant time. Each token has one role over a set of
projects (or every project, `*`):

- viewer: read entities, executions and their data;
- launcher: a viewer that also launches, cancels, relaunches and recovers executions;
- admin: a launcher that also registers code, activates launch plans and manages tokens
  of its own projects.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from taskfabric.errors import TaskfabricError
from taskfabric.metadata import MetadataStore
from taskfabric.metadata._store import reads
from taskfabric.server._schema import api_tokens

ALL_PROJECTS = "*"
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$")
_TOKEN = re.compile(r"^tf_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
# How often (seconds) a token's last use is written: not on every request.
_TOUCH_EVERY = 60.0


class Role(StrEnum):
    VIEWER = "viewer"
    LAUNCHER = "launcher"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.LAUNCHER: 1, Role.ADMIN: 2}


class TokenError(TaskfabricError, ValueError):
    """A token cannot be created as asked (unknown role, invalid project name)."""


def parse_role(text: str) -> Role:
    try:
        return Role(text.lower())
    except ValueError:
        raise TokenError(f"unknown role '{text}': use viewer, launcher or admin") from None


def check_projects(projects: Iterable[str]) -> tuple[str, ...]:
    found = tuple(dict.fromkeys(p.strip() for p in projects))
    if not found:
        raise TokenError("a token needs at least one project (--project NAME, or '*' for all)")
    for p in found:
        if p != ALL_PROJECTS and not _PROJECT.match(p):
            raise TokenError(
                f"project {p!r} is not a valid name: use letters, digits, '_', '.', '+' or "
                "'-', starting with a letter or digit (or '*' for every project)"
            )
    return (ALL_PROJECTS,) if ALL_PROJECTS in found else tuple(sorted(found))


@dataclass(frozen=True)
class Principal:
    """Who makes a request: a token's role over its projects."""

    token_id: str
    name: str
    role: Role
    projects: frozenset[str]

    @property
    def every_project(self) -> bool:
        return ALL_PROJECTS in self.projects

    def sees(self, project: str) -> bool:
        return self.every_project or project in self.projects

    def may(self, needed: Role, project: str) -> bool:
        return self.sees(project) and self.role.allows(needed)

    def covers(self, projects: Iterable[str]) -> bool:
        """Whether every one of `projects` (`*` included) is one of this principal's."""
        return self.every_project or all(p in self.projects for p in projects)


#: The principal of every request when the server runs with `[server] auth = false`.
ANONYMOUS_ADMIN = Principal("", "auth disabled", Role.ADMIN, frozenset({ALL_PROJECTS}))


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    role: Role
    projects: tuple[str, ...]
    created_at: float
    created_by: str = ""
    last_used_at: float | None = None
    revoked_at: float | None = None
    expires_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def expired(self, now: float | None = None) -> bool:
        return (
            self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at
        )

    @property
    def state(self) -> str:
        """revoked, expired or active."""
        return "revoked" if not self.active else "expired" if self.expired() else "active"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: sa.Row[tuple[object, ...]]) -> TokenInfo:
    m = row._mapping
    return TokenInfo(
        id=str(m["id"]),
        name=str(m["name"]),
        role=Role(m["role"]),
        projects=tuple(json.loads(str(m["projects"]))),
        created_at=float(m["created_at"]),
        created_by=str(m["created_by"]),
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
        expires_at=m["expires_at"],
    )


class TokenStore:
    """API tokens in the metadata database. Thread-safe.

    Every request reads its token's row: nothing about a token is cached in a process, so a
    revocation or an expiry holds at once for every process on the database. Only the write
    of `last_used_at` is spaced (at most once a minute per token and process).
    """

    def __init__(self, metadata: MetadataStore) -> None:
        self.engine = metadata.engine
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(
        self,
        *,
        projects: Iterable[str],
        role: str | Role,
        name: str = "",
        created_by: str = "",
        expires_in: float | None = None,
    ) -> tuple[TokenInfo, str]:
        """A new token, valid for `expires_in` seconds (None: until revoked); returns its
        record and its text, which is not stored and cannot be shown again."""
        role = role if isinstance(role, Role) else parse_role(role)
        scope = check_projects(projects)
        if expires_in is not None and not expires_in > 0:
            raise TokenError(f"a token's lifetime must be positive, not {expires_in} seconds")
        token_id = secrets.token_hex(6)
        text = f"tf_{token_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        expires_at = None if expires_in is None else now + expires_in
        info = TokenInfo(token_id, name, role, scope, now, created_by, expires_at=expires_at)
        with self.engine.begin() as conn:
            conn.execute(
                api_tokens.insert().values(
                    id=token_id,
                    name=name,
                    secret_hash=_digest(text),
                    role=role.value,
                    projects=json.dumps(list(scope)),
                    created_at=info.created_at,
                    created_by=created_by,
                    expires_at=expires_at,
                )
            )
        return info, text

    def list(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        q = sa.select(api_tokens).order_by(api_tokens.c.created_at)
        if not include_revoked:
            q = q.where(api_tokens.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            return [_info(r) for r in conn.execute(q).all()]

    def get(self, token_id: str) -> TokenInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first()
        return None if row is None else _info(row)

    def revoke(self, token_id: str) -> bool:
        """Revoke a token at once; False if there is no such active token."""
        t = api_tokens
        with self.engine.begin() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.id == token_id, t.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            ).rowcount
        return bool(done)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a token's text, or None for an unknown, wrong, revoked or expired
        token."""
        found = self.check(token)
        return found if isinstance(found, Principal) else None

    def check(self, token: str) -> Principal | str:
        """The principal of a token's text, or why it is refused (for the 401's message)."""
        unknown = "the API token is unknown or revoked"
        match = _TOKEN.match(token.strip())
        if match is None:
            return unknown
        token_id = match.group(1)
        with reads(self.engine).connect() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).first()
        stored = str(row._mapping["secret_hash"]) if row is not None else "0" * 64
        if not hmac.compare_digest(stored, _digest(token.strip())) or row is None:
            return unknown
        info = _info(row)
        if not info.active:
            return unknown
        if info.expired():
            assert info.expires_at is not None
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.expires_at))
            return f"the API token {info.id} expired at {when}"
        self._touch(token_id)
        return Principal(info.id, info.name, info.role, frozenset(info.projects))

    def _touch(self, token_id: str) -> None:
        now = time.time()
        with self._lock:
            if now - self._touched.get(token_id, 0.0) < _TOUCH_EVERY:
                return
            self._touched[token_id] = now
        with self.engine.begin() as conn:
            conn.execute(
                api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=now)
            )
