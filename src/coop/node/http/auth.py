"""Bearer credentials: member tokens (``coop_…``) and integration keys (``coopkey_…``)."""

from __future__ import annotations

import time
from typing import Any, Final

from litestar import Request

from coop.node.errors import AuthError, ForbiddenError
from coop.node.members.accounts import Integration, Member
from coop.node.members.repository import integration_by_key, member_by_token
from coop.node.storage.store import Store

__all__ = ["BUILDER_PATHS", "Authenticator", "bearer", "builder_allowed"]

_TTL: Final = 30.0
_MAX_CACHE: Final = 10_000

# A model builder's account (Role.BUILDER) reaches only these routes: who it is, its access
# requests and grants, and gated downloads.  Everything else (contributing, voting, proposing)
# answers 403, whichever route a later change adds.
BUILDER_PATHS: Final = ("/api/v1/me", "/api/v1/access/", "/gated/")


def builder_allowed(path: str) -> bool:
    """Whether a model builder's account may use the route at ``path``."""
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in BUILDER_PATHS)


def bearer(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("use 'Authorization: Bearer <token>'", field="Authorization")
    return value.strip()


class Authenticator:
    """Looks credentials up in the store, with a short cache for the hot ingest path."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._members: dict[str, tuple[Member, float]] = {}
        self._integrations: dict[str, tuple[Integration, float]] = {}

    def member(self, request: Request[Any, Any, Any], *, admin: bool = False) -> Member:
        token = bearer(request)
        if token is None:
            raise AuthError(
                "sign in: send your member token as 'Authorization: Bearer <token>'",
                field="Authorization",
            )
        now = time.monotonic()
        cached = self._members.get(token)
        if cached is not None and cached[1] > now:
            member = cached[0]
        else:
            found = self.store.read(lambda c: member_by_token(c, token))
            if found is None:
                raise AuthError("this token is not valid on this node", field="Authorization")
            member = found
            if len(self._members) > _MAX_CACHE:
                self._members.clear()
            self._members[token] = (member, now + _TTL)
        if admin and not member.is_admin:
            raise ForbiddenError("only the co-op's admins may do this", field="Authorization")
        if member.is_builder and not builder_allowed(request.scope.get("path", "")):
            raise ForbiddenError(
                "a model builder's account may request gated access and download what it was granted;"
                " it may not contribute, vote or propose",
                field="Authorization",
            )
        return member

    def integration(self, request: Request[Any, Any, Any]) -> Integration:
        key = bearer(request) or request.headers.get("x-api-key")
        if not key:
            raise AuthError(
                "send the integration's API key as 'Authorization: Bearer <key>'",
                field="Authorization",
            )
        now = time.monotonic()
        cached = self._integrations.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = self.store.read(lambda c: integration_by_key(c, key))
        if found is None:
            raise AuthError("this API key is not valid on this node", field="Authorization")
        if len(self._integrations) > _MAX_CACHE:
            self._integrations.clear()
        self._integrations[key] = (found, now + _TTL)
        return found
