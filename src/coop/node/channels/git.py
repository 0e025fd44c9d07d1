"""The git channel: each release one commit on a branch, tagged ``vN``, pushed to a repository.

The target is a path or URL of a repository (a bare one on a server, usually).
The node keeps its own clone under ``DATA/channels/git/``; each release
replaces the clone's tree with the release's files and its signed statement,
is committed with the release's own time, tagged ``vN`` and pushed with a
plain push.  The channel never forces: if the branch moved on the remote, or
a later release is already there, it refuses and changes nothing remote.

A revision of a published release (withdrawn records removed, see
``coop.node.releases.revision``) is a new commit whose parent is the commit of the
revision before it, tagged ``vN-rK``: a new tag, since a consumer who pinned
``vN`` expects it never to move (and moving it would take a force push).  If
that parent is the branch's head (the latest release), the branch moves on to
the revision with a plain push; otherwise only the new tag is pushed, so the
branch keeps the latest release.  The old commits stay in the history: git
never forgets without a rewrite, which this channel never does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Final

from coop.node.channels.base import (
    Capabilities,
    ChannelError,
    ReleaseFolder,
    commit_title_counts,
    release_tag,
)
from coop.node.releases.statement import STATEMENT

__all__ = ["GitPublisher"]

_TIMEOUT: Final = 300.0


def _version(name: str) -> tuple[int, int]:
    """(version, revision) of a tag ``vN`` or ``vN-rK``."""
    parsed = release_tag(name)
    if parsed is None:
        raise ChannelError(f"{name!r} is not a release name", field="release")
    return parsed


class GitPublisher:
    """Publishes releases to one git repository, one commit and one tag each."""

    name = "git"
    # Every release is a commit and a tag that stay: revisions of older releases go out too.
    capabilities = Capabilities()

    def __init__(
        self, target: str, *, workdir_root: Path, branch: str = "main", author: str, email: str
    ) -> None:
        if not target.strip():
            raise ChannelError("name the git repository to publish to", field="target")
        if shutil.which("git") is None:
            raise ChannelError("git is not installed on this machine", field="channel")
        self.target = target
        self.branch = branch
        self.author = author
        self.email = email
        key = hashlib.sha256(target.encode()).hexdigest()[:16]
        self.workdir = workdir_root / key

    # -- running git --------------------------------------------------------------------

    def _git(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        command = ["git", *args]
        full_env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",  # never wait for a password on a terminal
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
            **(env or {}),
        }
        try:
            done = subprocess.run(
                command,
                cwd=cwd or self.workdir,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ChannelError(f"git {args[0]} did not finish in {_TIMEOUT:g} s", field="target") from None
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            last = message[-1] if message else f"exit {done.returncode}"
            raise ChannelError(f"git {args[0]} failed: {last}", field="target")
        return done.stdout

    def _clone(self) -> None:
        """A clone of the target that matches its branch now (local leftovers are dropped)."""
        if not (self.workdir / ".git").is_dir():
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir.parent.mkdir(parents=True, exist_ok=True)
            self._git(
                "clone", "--quiet", "--no-checkout", self.target, str(self.workdir), cwd=self.workdir.parent
            )
        self._git("config", "user.name", self.author)
        self._git("config", "user.email", self.email)
        self._git("fetch", "--quiet", "--prune", "--prune-tags", "--tags", "origin")
        # Tags the remote does not have were never published: a failed push left them.
        remote = set(self._remote_tags())
        for tag in self._git("tag", "--list").split():
            if tag not in remote:
                self._git("tag", "-d", tag)
        if self._remote_head() is None:
            self._git("checkout", "--quiet", "--orphan", self.branch)
            self._git("rm", "-r", "--quiet", "--cached", "--ignore-unmatch", ".")
        else:
            self._git("checkout", "--quiet", "-B", self.branch, f"origin/{self.branch}")
            self._git("reset", "--quiet", "--hard", f"origin/{self.branch}")
        self._git("clean", "-fdxq")

    def _remote_head(self) -> str | None:
        out = self._git("ls-remote", "--heads", "origin", self.branch).split()
        return out[0] if out else None

    def _remote_tags(self) -> list[str]:
        names = []
        for line in self._git("ls-remote", "--tags", "origin").splitlines():
            ref = line.split("\t")[-1]
            if ref.startswith("refs/tags/") and not ref.endswith("^{}"):
                names.append(ref.removeprefix("refs/tags/"))
        return names

    # -- the channel ------------------------------------------------------------------

    def published(self) -> list[str]:
        self._clone()
        tags = [t for t in self._remote_tags() if release_tag(t) is not None]
        return sorted(tags, key=_version)

    def stage(self, release: ReleaseFolder, statement: bytes) -> str | None:
        return None  # a commit is made only when it is pushed

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        done = self.published()
        if release.name in done:
            there = self._git("show", f"{release.name}:release.json")
            if there.encode() != (release.path / "release.json").read_bytes():
                raise ChannelError(
                    f"{self.target} holds a different {release.name} (another node's, or a changed one); "
                    "the channel never replaces a published release",
                    field="target",
                )
            return self._git("rev-list", "-n", "1", release.name).strip()
        summary = release.summary
        earlier = [t for t in done if _version(t)[0] == summary.version]
        head = self._remote_head()
        on_branch = True
        if summary.revision > 1 and earlier:
            # A new revision of a published release: on top of the revision before it.
            parent = self._git("rev-list", "-n", "1", earlier[-1]).strip()
            on_branch = parent == head
            if not on_branch:
                self._git("checkout", "--quiet", "--detach", parent)
        elif done and _version(done[-1])[0] > summary.version:
            raise ChannelError(
                f"{done[-1]} is already published to {self.target}; publishing {release.name} after it "
                "would rewrite history",
                field="release",
            )
        self._replace_tree(release, statement)
        self._git("add", "--all")
        stamp = f"@{summary.created_at} +0000"
        env = {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        title = f"Release {summary.name}" + (f" revision {summary.revision}" if summary.revision > 1 else "")
        revised = (
            f"\n\nRevision {summary.revision}: records withdrawn by their members were removed; "
            f"revisions/r{summary.revision}.dsse.json names them, signed by the co-op's key."
            if summary.revision > 1
            else ""
        )
        message = (
            f"{title}: {commit_title_counts(summary)}\n\n"
            f"{summary.coop} ({summary.node_id}). Check it: every file's SHA-256 is in release.json, "
            f"signed by the co-op's key in {STATEMENT}.{revised}"
        )
        if summary.revision > 1:
            # Its own time: a revision is made after the cut (the cut's time would sort it before).
            stamp = f"@{max(summary.created_at, int(time.time()))} +0000"
            env = {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        self._git("commit", "--quiet", "--allow-empty", "-m", message, env=env)
        self._git("tag", "-a", release.name, "-m", f"{summary.coop} {release.name}", env=env)
        commit = self._git("rev-parse", "HEAD").strip()
        if self._remote_head() != head:
            self._git("tag", "-d", release.name)
            raise ChannelError(
                f"the {self.branch} branch of {self.target} changed while publishing; "
                "nothing was pushed (run publish again)",
                field="target",
            )
        # Off the branch (a revision of an older release), only the new tag goes: the branch
        # keeps the latest release.
        refs = [self.branch] if on_branch else []
        try:
            # A plain push: a remote that moved on refuses it, and the channel never forces.
            self._git("push", "--quiet", "--atomic", "origin", *refs, f"refs/tags/{release.name}")
        except ChannelError as exc:
            self._git("tag", "-d", release.name)
            raise ChannelError(
                f"{self.target} refused the push, so nothing was published: {exc.message}. "
                "The channel never rewrites history; look at what changed there first",
                field="target",
            ) from None
        return commit

    def _replace_tree(self, release: ReleaseFolder, statement: bytes) -> None:
        for child in self.workdir.iterdir():
            if child.name == ".git":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        for relative in release.files():  # a gated bucket's data files are not among them
            destination = self.workdir / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if release.as_cut(relative):
                shutil.copyfile(release.path / relative, destination)
            else:
                destination.write_bytes(release.read(relative))
        (self.workdir / STATEMENT).write_bytes(statement)
