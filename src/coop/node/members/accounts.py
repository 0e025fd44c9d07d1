"""Members, admins and integrations, and the bearer secrets they authenticate with.

Secrets are random (256 bits), shown once, and stored only as SHA-256: a
slow hash buys nothing for a secret that cannot be guessed.
"""

from __future__ import annotations

import enum
import hashlib
import secrets

import msgspec

__all__ = ["Integration", "Member", "Role", "hash_secret", "new_secret"]


class Role(enum.StrEnum):
    MEMBER = "member"
    ADMIN = "admin"
    BUILDER = "builder"  # a model builder: may request gated access; never votes nor contributes


class Member(msgspec.Struct, frozen=True):
    """Who is acting: never sent outside the node except ``name`` where attribution allows."""

    id: int
    name: str
    role: Role
    provider: str
    contributor_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def is_builder(self) -> bool:
        return self.role is Role.BUILDER


class Integration(msgspec.Struct, frozen=True):
    id: int
    name: str


def new_secret(prefix: str = "coop_") -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()
