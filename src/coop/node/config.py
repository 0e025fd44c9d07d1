"""The node's configuration file, ``node.toml`` in the data directory.

Read once at start; unknown keys are errors (a typo in a limit must not be
silently ignored).  Every setting has a default so an old file keeps working.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Final

import msgspec
import tomli_w

from coop.governance import GovernanceError
from coop.node.errors import StorageError

__all__ = [
    "GIT_MODES",
    "MOVED_SECTIONS",
    "Config",
    "EvalConfig",
    "FederationConfig",
    "LimitsConfig",
    "NodeSection",
    "PipelineConfig",
    "RateLimitConfig",
    "RetentionConfig",
    "StorageConfig",
    "load_config",
    "write_config",
]


# Sections that moved out of node.toml into the database.  load_config passes over them; the
# node reads them once when it opens (coop.node.storage.upgrade) and removes them from the file.
MOVED_SECTIONS: Final = {
    "defaults": "the collective settings (3f30127): their `defaults` when the node has no settings yet",
}


class NodeSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    terms_version: str = "2026-11"
    public_url: str = "http://127.0.0.1:8000"
    # Reverse proxies (their addresses) whose X-Forwarded-For names the real client, for
    # rate limits and security logs; empty: the peer address is the client.
    trusted_proxies: tuple[str, ...] = ()


class LimitsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_body_bytes: int = 2 * 1024 * 1024
    max_messages: int = 500
    max_message_chars: int = 100_000
    max_note_chars: int = 10_000


class RateLimitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Token buckets: a steady rate per minute and a burst, per client IP and per credential."""

    per_ip_per_minute: int = 1200
    per_ip_burst: int = 200
    per_token_per_minute: int = 600
    per_token_burst: int = 100


class RetentionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    security_days: int = 7


class PipelineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval_seconds: float = 2.0
    batch_size: int = 200
    quarantine_pii_threshold: int = 5


class StorageConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # "full" fsyncs every group commit (survives power loss); "normal" survives a killed process.
    synchronous: str = "full"


class FederationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval_seconds: float = 5.0
    fanout: int = 3
    manifest_lifetime_days: int = 30
    request_timeout_seconds: float = 10.0
    max_response_bytes: int = 128 * 1024 * 1024
    # All the requests of one exchange with one peer together: a slow peer costs at most this.
    exchange_budget_seconds: float = 30.0


class HealthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When ``/healthz`` calls a periodic job stale: no success for this many of its intervals
    (and never sooner than ``stale_min_seconds``, so one slow run is not an outage)."""

    stale_after_intervals: float = 10.0
    stale_min_seconds: float = 120.0


GIT_MODES: Final = ("commit", "review")


class ChannelsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where ``coop publish`` sends releases when no ``--target`` is given (empty: not set up)."""

    git: str = ""  # a repository path or URL
    git_branch: str = "main"
    # "commit": each release is pushed straight to git_branch and tagged; "review": each goes to
    # a branch coop/<label> for the repository's maintainers to merge (tagged once merged).
    git_mode: str = "commit"
    review_check_s: float = 300.0  # how often a serving node looks whether review branches merged
    hf: str = ""  # a Hugging Face dataset repository id, ``org/name``
    site: str = ""  # a folder the static site is built in
    site_node_url: str = ""  # the node's public URL, linked from the static pages
    # The co-op's Bluesky handle (its app password: COOP_BLUESKY_PASSWORD or DATA/keys/bluesky).
    bluesky: str = ""
    bluesky_service: str = "https://bsky.social"  # the handle's PDS
    bluesky_max_posts: int = 10  # record previews posted per release, after its announcement

    def __post_init__(self) -> None:
        if self.git_mode not in GIT_MODES:
            raise ValueError(f"channels.git_mode must be 'commit' or 'review', not {self.git_mode!r}")
        if not self.review_check_s > 0:
            raise ValueError(
                f"channels.review_check_s must be a positive number of seconds, not {self.review_check_s}"
            )


class EvalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Limits on each federated evaluation the node answers, run in a child process of its own."""

    max_model_mb: int = 1024  # a larger model artifact is declined (model_too_large)
    timeout_s: float = 600.0  # wall-clock time per request; the child is killed after it
    memory_mb: int = 4096  # the child's address space (RLIMIT_AS): artifact, model and records
    nice: int = 10  # the child's niceness, 0 (as the node) to 19 (only what ingest leaves idle)
    threads: int = 1  # threads the evaluator's numeric libraries may use

    def __post_init__(self) -> None:
        for key in ("max_model_mb", "memory_mb", "threads"):
            if getattr(self, key) <= 0:
                raise ValueError(f"eval.{key} must be a positive integer, not {getattr(self, key)}")
        if not self.timeout_s > 0:
            raise ValueError(f"eval.timeout_s must be a positive number of seconds, not {self.timeout_s}")
        if not 0 <= self.nice <= 19:
            raise ValueError(f"eval.nice must be from 0 to 19, not {self.nice}")


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    node: NodeSection
    limits: LimitsConfig = LimitsConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    retention: RetentionConfig = RetentionConfig()
    pipeline: PipelineConfig = PipelineConfig()
    storage: StorageConfig = StorageConfig()
    federation: FederationConfig = FederationConfig()
    channels: ChannelsConfig = ChannelsConfig()
    health: HealthConfig = HealthConfig()
    eval: EvalConfig = EvalConfig()

    def __post_init__(self) -> None:
        if self.storage.synchronous not in ("full", "normal"):
            raise ValueError("storage.synchronous must be 'full' or 'normal'")


def load_config(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StorageError(f"{path} not found: is this a data directory made by `coop init`?") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    for section in MOVED_SECTIONS:
        raw.pop(section, None)
    try:
        return msgspec.convert(raw, Config)
    except (msgspec.ValidationError, GovernanceError, ValueError) as exc:
        raise StorageError(f"invalid {path.name}: {exc}") from exc


def write_config(path: Path, config: Config) -> None:
    data: dict[str, Any] = msgspec.to_builtins(config)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
