"""A member's token: from --token, --token-file, COOP_TOKEN or ``coop login``'s stored file.

Light on purpose: click and the standard library only (plus :mod:`coop.node.errors`), so that
``coop --help`` starts fast; a command imports what it needs inside its function.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coop.node.cli.exits import UsageError
from coop.node.cli.output import Progress
from coop.node.errors import (
    InputError,
)

if TYPE_CHECKING:
    pass


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "coop"


def credentials_path() -> Path:
    return config_dir() / "credentials.toml"


def stored_tokens() -> dict[str, str]:
    """Node URL -> token, as ``coop login`` stored them."""
    path = credentials_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", field="credentials") from None
    nodes = data.get("nodes", {})
    return {
        url: entry["token"]
        for url, entry in nodes.items()
        if isinstance(entry, dict) and isinstance(entry.get("token"), str)
    }


def store_token(url: str, token: str) -> Path:
    """Keep ``token`` for ``url`` in the user's config directory (mode 0600)."""
    import tomli_w

    tokens = stored_tokens()
    tokens[url] = token
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = tomli_w.dumps({"nodes": {u: {"token": t} for u, t in sorted(tokens.items())}})
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def read_token_file(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the token file {path}: {exc}", field="--token-file") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise UsageError(f"the token file {path} is empty", field="--token-file")
    return token


def resolve_token(url: str, token: str | None, token_file: Path | None) -> str:
    """--token, then --token-file, then COOP_TOKEN, then the token ``coop login`` stored for URL."""
    if token:
        return token
    if token_file is not None:
        return read_token_file(token_file)
    env = os.environ.get("COOP_TOKEN", "").strip()
    if env:
        return env
    stored = stored_tokens().get(url.rstrip("/"))
    if stored:
        return stored
    raise UsageError(
        f"no member token for {url}: pass --token-file FILE, set COOP_TOKEN, or run coop login {url}",
        field="--token",
    )


def member_client(
    node_url: str, token: str | None, token_file: Path | None, *, progress: Progress | None = None
) -> Any:
    """A :class:`coop.node.client.NodeClient` for a member command (URL checked, token resolved)."""
    from coop.node.client import NodeClient, check_node_url

    try:
        url = check_node_url(node_url)
    except InputError as exc:
        raise UsageError(exc.message, field="--node") from None

    def waiting(delay: float, why: str) -> None:
        if progress is not None:
            progress(f"the node asks to wait {delay:g} s ({why}); waiting")

    return NodeClient(url, resolve_token(url, token, token_file), on_wait=waiting)
