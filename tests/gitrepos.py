"""Real git repositories for channel tests: a bare "server", a maintainer's clone, a node on it.

Nothing here is faked: every helper runs the real ``git`` on folders under the test's own
``tmp_path``; the "server" is a bare repository on disk, never a network remote.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import msgspec

from coop.node.config import load_config, write_config
from coop.node.runtime import Node
from coop.node.storage.datadir import DataDir

from factories import contribute, make_member, process

WHO = ("-c", "user.name=Maintainer", "-c", "user.email=maintainer@example.invalid")


def git(*args: str, cwd: Path) -> str:
    """Run git in ``cwd``; its stdout (a failure raises)."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def has(ref: str, repo: Path) -> bool:
    """Whether ``ref`` names an object in ``repo``."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", ref],
        cwd=repo,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode == 0


def bare_repo(tmp_path: Path, *, seeded: bool = False) -> Path:
    """A bare repository ``dataset.git`` on ``main``; ``seeded``: with one maintainer's commit on it,
    as a hosted dataset repository would be, else empty, as a server would host a new one."""
    path = tmp_path / "dataset.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(path)], check=True, timeout=60)
    if seeded:
        seed = clone(path, tmp_path / "seed")
        (seed / "README.md").write_text("A dataset the co-op contributes to.\n")
        git("add", "README.md", cwd=seed)
        git(*WHO, "commit", "-qm", "start", cwd=seed)
        git("push", "--quiet", "origin", "HEAD:main", cwd=seed)
    return path


def clone(bare: Path, path: Path) -> Path:
    """A working clone of ``bare`` at ``path`` (a maintainer's, say)."""
    git("clone", "--quiet", str(bare), str(path), cwd=path.parent)
    return path


def git_node(tmp_path: Path, bare: Path, mode: str = "review") -> Node:
    """A new node whose git channel targets ``bare`` in ``mode`` (review or commit)."""
    root = tmp_path / "node"
    data = DataDir.create(root, name="Review Co-op")
    config = load_config(data.config_path)
    channels = msgspec.structs.replace(config.channels, git=str(bare), git_mode=mode)
    write_config(data.config_path, msgspec.structs.replace(config, channels=channels))
    return Node(root)


def release(node: Node, count: int = 2) -> None:
    """A new member's ``count`` open public records, processed and cut into the next release."""
    member, _ = make_member(node)
    for _ in range(count):
        contribute(node, member, license="CC0-1.0")
    process(node)
    node.cut_release()
