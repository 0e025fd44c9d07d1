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

Review mode (``channels.git_mode = "review"``) is for a repository the co-op
does not own outright: each release goes to a branch ``coop/<label>`` instead,
stacked on the newest review branch still open (else on the target branch), and
gets no tag.  The repository's maintainers merge it (a merge, a squash or a
rebase) or close it (delete the branch).  :meth:`GitPublisher.review_states`
reads which, from the target alone: merged when the target branch's history
holds the release commit or a commit with its tree (or a merged release stacked
on it); closed when its branch is gone and it was not merged; else open.  A
merged release is then tagged ``<label>`` at its commit and pushed, as in commit
mode.  A revision of an older release (not the newest offered) goes as in commit
mode, a tag off the branch: nothing in it asks for a merge, and it is live at once
(:attr:`GitPublisher.last_live` says so).  The node keeps a local ref
``refs/coop/<label>`` per release it offered, so it can still tell a squash merge
after the branch was deleted; the commits the node recorded (``recorded``) stand in
for refs a fresh clone lacks.

The target is not trusted: a review branch counts only while it carries the commit the
node offered, a tag only at that commit (or its tree), and a merge only if the branch
still holds the release's files.

Longer than ~500 lines on purpose: commit mode, review mode and their checks against a
target the co-op does not control share one clone, one lock and one git runner.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

from coop.node.channels.base import (
    Capabilities,
    ChannelError,
    ReleaseFolder,
    commit_title_counts,
    release_tag,
)
from coop.node.errors import BusyError
from coop.node.releases.card import CARD
from coop.node.releases.statement import STATEMENT

__all__ = ["REVIEW_PREFIX", "GitPublisher", "ReviewState"]

_TIMEOUT: Final = 300.0
_LOCK_WAIT: Final = 60.0  # another publish or review check on the same clone: wait this long for it
REVIEW_PREFIX: Final = "coop/"  # review branches: coop/v3, coop/v3-r2
_KEPT: Final = "refs/coop/"  # local refs to each release offered for review (fetch --prune keeps them)

ReviewState = Literal["open", "merged", "closed"]


def _reason(done: subprocess.CompletedProcess[str]) -> str:
    """Git's own reason for a failure: its last rejection (``! [rejected] ...``) or
    ``error:``/``fatal:`` line, else its last line of output."""
    lines = [line.strip() for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
    told = [line for line in lines if line.startswith(("!", "error:", "fatal:"))]
    return (told or lines or [f"exit {done.returncode}"])[-1]


def _version(name: str) -> tuple[int, int]:
    """(version, revision) of a tag ``vN`` or ``vN-rK``."""
    parsed = release_tag(name)
    if parsed is None:
        raise ChannelError(f"{name!r} is not a release name", field="release")
    return parsed


class GitPublisher:
    """Publishes releases to one git repository, one commit and one tag each (``review``: one
    review branch each, tagged once merged)."""

    name = "git"
    # Every release is a commit and a tag that stay: revisions of older releases go out too.
    capabilities = Capabilities()

    def __init__(
        self,
        target: str,
        *,
        workdir_root: Path,
        branch: str = "main",
        author: str,
        email: str,
        review: bool = False,
        recorded: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """``recorded``: the release commits the node recorded for its open reviews (label ->
        commit, the publications' refs), read when a release is stacked on an open one."""
        if not target.strip():
            raise ChannelError("name the git repository to publish to", field="target")
        if shutil.which("git") is None:
            raise ChannelError("git is not installed on this machine", field="channel")
        self.target = target
        self.branch = branch
        self.author = author
        self.email = email
        self.review = review
        self._recorded = recorded
        # Whether the last publish went live at once (pushed with its tag) rather than offered
        # for review (a review branch, live once merged); None before the first.
        self.last_live: bool | None = None
        if review:
            self.capabilities = Capabilities(reviewed=True)
        key = hashlib.sha256(target.encode()).hexdigest()[:16]
        # Absolute: git clones with the clone's parent as its working directory (a relative data
        # directory, ``coop publish d``, would otherwise nest the clone inside itself).
        workdir_root = workdir_root.absolute()
        self.workdir = workdir_root / key
        self._lock_path = workdir_root / f"{key}.lock"
        self._held = 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One user of the clone at a time (``coop publish`` and the server's review check may
        both run); re-entrant within this publisher."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + _LOCK_WAIT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BusyError(
                            f"another publish to this git target is running (waited {_LOCK_WAIT:g} s)",
                            field="target",
                        ) from None
                    time.sleep(0.05)
            self._held = 1
            try:
                yield
            finally:
                self._held = 0
        finally:
            os.close(fd)

    # -- running git --------------------------------------------------------------------

    def _git(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        done = self._run(*args, cwd=cwd, env=env)
        if done.returncode != 0:
            raise ChannelError(f"git {args[0]} failed: {_reason(done)}", field="target")
        return done.stdout

    def _yes(self, *args: str) -> bool:
        """A git question answered by its exit status (0 yes, 1 no); anything else is an error."""
        done = self._run(*args)
        if done.returncode not in (0, 1):
            raise ChannelError(f"git {args[0]} failed: {_reason(done)}", field="target")
        return done.returncode == 0

    def _run(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
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
        return done

    def _clone(self) -> None:
        """A clone of the target that matches its branch now (local leftovers are dropped)."""
        self._fetch()
        if self._remote_head() is None:
            self._git("checkout", "--quiet", "--orphan", self.branch)
            self._git("rm", "-r", "--quiet", "--cached", "--ignore-unmatch", ".")
        else:
            self._git("checkout", "--quiet", "-B", self.branch, f"origin/{self.branch}")
            self._git("reset", "--quiet", "--hard", f"origin/{self.branch}")
        self._git("clean", "-fdxq")

    def _fetch(self) -> None:
        """The clone's view of the target brought up to date; its work tree is left alone."""
        if not (self.workdir / ".git").is_dir():
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir.parent.mkdir(parents=True, exist_ok=True)
            self._git(
                "clone", "--quiet", "--no-checkout", self.target, str(self.workdir), cwd=self.workdir.parent
            )
        self._git("config", "user.name", self.author)
        self._git("config", "user.email", self.email)
        # --force: a tag moved on the target moves here too (else every later fetch fails with
        # "would clobber existing tag"); what it now points at is checked where it matters (a
        # release the target holds must be the co-op's, see _publish and _states).  Not --quiet,
        # so a failure says git's own reason.
        self._git("fetch", "--force", "--prune", "--prune-tags", "--tags", "origin")
        # Tags the remote does not have were never published: a failed push left them.
        remote = set(self._remote_tags())
        for tag in self._git("tag", "--list").split():
            if tag not in remote:
                self._git("tag", "-d", tag)

    def _remote_head(self) -> str | None:
        out = self._git("ls-remote", "--heads", "origin", self.branch).split()
        return out[0] if out else None

    def _review_branches(self) -> dict[str, str]:
        """The target's review branches: release label -> the branch's commit."""
        found = {}
        for line in self._git("ls-remote", "--heads", "origin", f"refs/heads/{REVIEW_PREFIX}*").splitlines():
            commit, _, ref = line.partition("\t")
            label = ref.removeprefix(f"refs/heads/{REVIEW_PREFIX}")
            if release_tag(label) is not None:
                found[label] = commit
        return found

    def _remote_tags(self) -> list[str]:
        names = []
        for line in self._git("ls-remote", "--tags", "origin").splitlines():
            ref = line.split("\t")[-1]
            if ref.startswith("refs/tags/") and not ref.endswith("^{}"):
                names.append(ref.removeprefix("refs/tags/"))
        return names

    # -- the channel ------------------------------------------------------------------

    def published(self) -> list[str]:
        """The releases the target holds: its release tags (and, in review mode, the releases
        on a review branch, merged or not)."""
        with self._locked():
            self._clone()
            names = {t for t in self._remote_tags() if release_tag(t) is not None}
            if self.review:
                names |= set(self._review_branches())
            return sorted(names, key=_version)

    def stage(self, release: ReleaseFolder, statement: bytes) -> str | None:
        return None  # a commit is made only when it is pushed

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        with self._locked():
            return self._publish(release, statement)

    def _publish(self, release: ReleaseFolder, statement: bytes) -> str:
        self.last_live = None
        done = self.published()
        if release.name in done:
            there_ref = release.name
            live = release.name in self._remote_tags()
            if not live:  # on its review branch only
                there_ref = f"origin/{REVIEW_PREFIX}{release.name}"
            there = self._run("show", f"{there_ref}:release.json")
            if there.returncode != 0 or there.stdout.encode() != (release.path / "release.json").read_bytes():
                raise ChannelError(
                    f"{self.target} holds a different {release.name} (another node's, or a changed one); "
                    "the channel never replaces a published release",
                    field="target",
                )
            commit = self._git("rev-list", "-n", "1", there_ref).strip()
            self.last_live = live
            return commit
        summary = release.summary
        earlier = [t for t in done if _version(t)[0] == summary.version]
        newest = max((_version(t)[0] for t in done), default=0)
        if self.review and not (summary.revision > 1 and earlier and summary.version < newest):
            offered = self._offer(release, statement, done)
            self.last_live = False
            return offered
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
        env = self._commit(release, statement)
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
        self.last_live = True
        return commit

    def _commit(self, release: ReleaseFolder, statement: bytes) -> dict[str, str]:
        """Commit the release's tree on the checked-out branch; returns the commit's date env."""
        summary = release.summary
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
        return env

    # -- review mode ------------------------------------------------------------------

    def _offer(self, release: ReleaseFolder, statement: bytes, done: list[str]) -> str:
        """Push the release to its own review branch, on top of the newest one still open (else
        on the target branch), without a tag: the maintainers' merge publishes it."""
        branches = self._review_branches()
        # The commits this node recorded: a clone made afresh has no refs/coop/ of its own.
        recorded = dict(self._recorded()) if self._recorded is not None else {}
        states = self._states(list(branches), recorded)
        still_open = sorted((label for label, state in states.items() if state == "open"), key=_version)
        if still_open and _version(still_open[-1]) > _version(release.name):
            raise ChannelError(
                f"{still_open[-1]} is already offered for review on {self.target}; offering "
                f"{release.name} after it would rewrite history",
                field="release",
            )
        base = None
        if still_open:
            # On the commit this node offered, not on whatever the branch holds now (one pushed
            # on top of it); a branch whose commit neither the node's record nor the clone
            # keeps is trusted as it stands (it was found open).
            kept = self._commit_of(still_open[-1], recorded)
            base = kept or f"origin/{REVIEW_PREFIX}{still_open[-1]}"
        if base is None and self._remote_head() is not None:
            base = f"origin/{self.branch}"
        name = f"{REVIEW_PREFIX}{release.name}"
        if base is None:
            self._git("checkout", "--quiet", "--orphan", name)
            self._git("rm", "-r", "--quiet", "--cached", "--ignore-unmatch", ".")
        else:
            self._git("checkout", "--quiet", "-B", name, base)
        self._commit(release, statement)
        commit = self._git("rev-parse", "HEAD").strip()
        try:
            # A new branch: a plain push that refuses to replace one of the same name.
            self._git("push", "--quiet", "origin", f"{commit}:refs/heads/{name}")
        except ChannelError as exc:
            raise ChannelError(
                f"{self.target} refused the review branch {name}, so nothing was offered: {exc.message}",
                field="target",
            ) from None
        self._git("update-ref", f"{_KEPT}{release.name}", commit)
        return commit

    def review_states(
        self, labels: Sequence[str], *, commits: Mapping[str, str] | None = None
    ) -> dict[str, ReviewState]:
        """Where each release offered for review stands on the target now; the merged ones
        are tagged there (``<label>`` at the release commit) before this returns.

        ``commits``: the release commits as the node recorded them (the publications' refs),
        for releases whose review branch is gone.  A release whose commit this clone cannot
        find and whose branch is gone stays open: the channel never guesses it closed.
        """
        with self._locked():
            self._fetch()
            states = self._states(labels, commits or {})
            self._tag_merged(states, commits or {})
            return states

    def _commit_of(self, label: str, commits: Mapping[str, str]) -> str | None:
        """The release commit of ``label`` as this node made it: the node's record, else the
        clone's ref.  Never the review branch's tip: whoever can push to the target can delete
        the branch and re-create it with other content."""
        for candidate in (commits.get(label), f"{_KEPT}{label}"):
            if not candidate:
                continue
            # --verify --quiet: a ref or commit the clone lacks (a clone made afresh) is a
            # plain "no" (exit 1), where cat-file -e would fail outright.
            if self._yes("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"):
                return self._git("rev-parse", f"{candidate}^{{commit}}").strip()
        return None

    def _carries(self, ref: str, commit: str, *, descendant: bool = True) -> bool:
        """Whether ``ref`` (a review branch's tip, a tag) is the release ``commit``, or a
        commit with the same tree (``descendant``: only one on top of it, as an empty commit
        pushed onto the review branch)."""
        if not self._yes("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"):
            return False  # gone, or not a commit (a tag at a blob)
        tip = self._git("rev-parse", f"{ref}^{{commit}}").strip()
        if tip == commit:
            return True
        if self._tree(tip) != self._tree(commit):
            return False
        return not descendant or self._yes("merge-base", "--is-ancestor", commit, tip)

    def _tree(self, commit: str) -> str:
        return self._git("rev-parse", f"{commit}^{{tree}}").strip()

    def _still_holds(self, commit: str, tip: str) -> bool:
        """Whether the branch tip ``tip`` still holds every file of the release ``commit`` byte
        for byte (files the maintainers added beside them aside; the card they may edit)."""
        changed = self._git("diff", "--name-only", "--no-renames", "--diff-filter=DMT", commit, tip, "--")
        return not [path for path in changed.splitlines() if path and path != CARD]

    def _states(self, labels: Sequence[str], commits: Mapping[str, str]) -> dict[str, ReviewState]:
        branches = self._review_branches()
        tags = set(self._remote_tags())
        head = self._remote_head()
        trees: set[str] = set()
        if head is not None:
            # The branch's own line only: a merge's second parent is the release commit itself,
            # whose tree says nothing of what the merge kept.
            trees = set(self._git("log", "--first-parent", "--format=%T", f"origin/{self.branch}").split())
        found = {label: self._commit_of(label, commits) for label in labels}
        # A tag counts only at the release commit (or its tree): any tag of that name will not do.
        merged: set[str] = {
            label
            for label, commit in found.items()
            if label in tags
            and commit is not None
            and self._carries(f"refs/tags/{label}", commit, descendant=False)
        }
        for label, commit in found.items():
            if label in merged or commit is None or head is None:
                continue
            # Merged: a commit of the branch has the release's tree (a squash, a rebase, a merge
            # into an unmoved branch), or the release commit is in its history and the tip still
            # holds the release's files (a merge that dropped the data is no merge).
            if self._tree(commit) in trees or (
                self._yes("merge-base", "--is-ancestor", commit, f"origin/{self.branch}")
                and self._still_holds(commit, f"origin/{self.branch}")
            ):
                merged.add(label)
        # A release stacked under a merged one was merged with it (whatever kind of merge).
        tips = [found[label] for label in merged if found[label] is not None]
        for label, commit in found.items():
            if (
                label not in merged
                and commit is not None
                and any(self._yes("merge-base", "--is-ancestor", commit, tip) for tip in tips if tip)
            ):
                merged.add(label)
        states: dict[str, ReviewState] = {}
        for label in labels:
            commit = found[label]
            if label in merged:
                states[label] = "merged"
            elif commit is None or (
                label in branches and self._carries(f"origin/{REVIEW_PREFIX}{label}", commit)
            ):
                # Open while its branch still carries the release commit; a branch re-created
                # with other content is not the co-op's release.  A release whose commit the
                # clone cannot find stays open: the channel never guesses it closed.
                states[label] = "open"
            else:
                states[label] = "closed"
        return states

    def _tag_merged(self, states: Mapping[str, ReviewState], commits: Mapping[str, str]) -> None:
        """Tag each merged release at its commit on the target, as commit mode would have."""
        tags = set(self._remote_tags())
        new = []
        for label, state in sorted(states.items(), key=lambda item: _version(item[0])):
            if state != "merged" or label in tags:
                continue
            commit = self._commit_of(label, commits)
            if commit is None:
                continue
            if self._yes("rev-parse", "--verify", "--quiet", f"refs/tags/{label}"):
                self._git("tag", "-d", label)
            stamp = f"@{int(time.time())} +0000"  # the tag's own time: when the merge was seen
            env = {"GIT_COMMITTER_DATE": stamp}
            self._git("tag", "-a", label, "-m", f"{self.author} {label}", commit, env=env)
            new.append(label)
        if not new:
            return
        try:
            self._git("push", "--quiet", "--atomic", "origin", *(f"refs/tags/{label}" for label in new))
        except ChannelError as exc:
            for label in new:
                self._git("tag", "-d", label)
            raise ChannelError(
                f"{self.target} refused the tags of merged releases: {exc.message}", field="target"
            ) from None

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
