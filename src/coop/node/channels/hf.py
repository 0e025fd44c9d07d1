"""The Hugging Face Hub channel: a dataset repository that holds the latest release, one commit each.

The repository's tree is the release folder as cut (the dataset card with its
``license``, one ``configs`` entry per licence bucket and the gated-access
terms; the buckets; ``release.json``, ``croissant.json``, ``SHA256SUMS``,
``tombstones.jsonl``) plus the signed ``release.dsse.json``.  Each release is
**one** ``create_commit``: every file of the release added, and every file the
repository held that the release no longer has (a bucket emptied by
withdrawals) deleted in the same commit.  The commit names the head it was
planned against as ``parent_commit``, so a concurrent change on the Hub makes it
fail instead of mixing.  The commit is then tagged ``vN``.  A revision of the
release the branch holds (withdrawn records removed) is one more such commit,
tagged ``vN-rK``; revisions of older releases do not go to the Hub, whose branch
holds the latest release only (their old tags stay: the channel never moves one).

Planning and committing are separate: :meth:`HubPublisher.plan` stages the
files in a folder under the data directory and writes ``commit-plan.json``
(what ``--dry-run`` stops at); :meth:`HubPublisher.publish` plans and commits.
Only :class:`HubApi` talks to the network; tests give a fake one (the one mock
in the suite: the Hub is unreachable from here).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any, Final, Protocol

import msgspec
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from coop.node.channels.base import (
    Capabilities,
    ChannelError,
    ReleaseFolder,
    commit_title_counts,
    release_tag,
)
from coop.node.files import sha256_file
from coop.node.releases.statement import STATEMENT

__all__ = ["CommitPlan", "HubApi", "HubPublisher", "PlannedFile", "hub_api"]

PLAN_FILE: Final = "commit-plan.json"
REPO_TYPE: Final = "dataset"
_REPO_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_KEEP: Final = frozenset({".gitattributes"})  # the Hub's own file: never ours to delete


class PlannedFile(msgspec.Struct, frozen=True):
    path_in_repo: str
    sha256: str
    bytes: int


class CommitPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Exactly what one publish sends: written as ``commit-plan.json`` beside the staged files."""

    repo_id: str
    repo_type: str
    revision: str
    release: str
    parent_commit: str | None  # None: the repository is new (or empty) and is created first
    commit_message: str
    commit_description: str
    tag: str
    add: list[PlannedFile]
    delete: list[str]
    staged: str  # the folder holding the files to add, laid out as in the repository


class HubApi(Protocol):
    """The part of ``huggingface_hub.HfApi`` this channel uses."""

    def repo_info(self, repo_id: str, *, repo_type: str | None = ..., revision: str | None = ...) -> Any: ...

    def list_repo_files(
        self, repo_id: str, *, revision: str | None = ..., repo_type: str | None = ...
    ) -> list[str]: ...

    def list_repo_refs(self, repo_id: str, *, repo_type: str | None = ...) -> Any: ...

    def create_repo(self, repo_id: str, *, repo_type: str | None = ..., exist_ok: bool = ...) -> Any: ...

    def create_commit(
        self,
        repo_id: str,
        operations: Any,
        *,
        commit_message: str,
        commit_description: str | None = ...,
        repo_type: str | None = ...,
        revision: str | None = ...,
        parent_commit: str | None = ...,
    ) -> Any: ...

    def create_tag(
        self,
        repo_id: str,
        *,
        tag: str,
        tag_message: str | None = ...,
        revision: str | None = ...,
        repo_type: str | None = ...,
        exist_ok: bool = ...,
    ) -> None: ...


def hub_api() -> HubApi:
    """The real client: its token comes from ``HF_TOKEN`` or ``hf auth login``."""
    from huggingface_hub import HfApi

    api: HubApi = HfApi()
    return api


def _version(name: str) -> tuple[int, int]:
    """(version, revision) of a tag ``vN`` or ``vN-rK``; (-1, 0) for any other tag."""
    return release_tag(name) or (-1, 0)


class HubPublisher:
    """Publishes releases to one Hugging Face dataset repository."""

    name = "hf"
    # The branch holds the latest release; a dry run stages the exact commit and its plan.
    capabilities = Capabilities(latest_only=True, stages_plan=True)

    def __init__(self, target: str, *, api: HubApi, staging_root: Path, revision: str = "main") -> None:
        if not _REPO_ID.match(target):
            raise ChannelError(
                f"{target!r} is not a Hugging Face repository id: write it as owner/name", field="target"
            )
        self.target = target
        self.api = api
        self.revision = revision
        self.staging_root = staging_root / target.replace("/", "--")

    # -- what the Hub holds -------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise
        except (HfHubHTTPError, OSError, ValueError, RuntimeError) as exc:  # say which call failed, and why
            raise ChannelError(f"{what} on the Hub ({self.target}) failed: {exc}", field="target") from None

    def _state(self) -> tuple[str | None, list[str], dict[str, str]]:
        """The head commit of the branch, its files, and the ``vN`` tags (name -> commit)."""
        try:
            head = self._call(
                "reading the repository",
                self.api.repo_info,
                self.target,
                repo_type=REPO_TYPE,
                revision=self.revision,
            ).sha
            files = self._call(
                "listing files",
                self.api.list_repo_files,
                self.target,
                repo_type=REPO_TYPE,
                revision=self.revision,
            )
        except RepositoryNotFoundError:
            return None, [], {}  # a new repository: created at the first publish
        except RevisionNotFoundError:
            head, files = None, []  # the repository exists, the branch not yet
        refs = self._call("listing tags", self.api.list_repo_refs, self.target, repo_type=REPO_TYPE)
        tags = {t.name: t.target_commit for t in refs.tags if release_tag(t.name) is not None}
        return head, list(files), tags

    def published(self) -> list[str]:
        _, _, tags = self._state()
        return sorted(tags, key=_version)

    # -- planning -----------------------------------------------------------------------

    def plan(self, release: ReleaseFolder, statement: bytes) -> CommitPlan:
        """Stage the files and write the exact commit plan; nothing is sent."""
        return self._plan(release, statement, self._state())

    def stage(self, release: ReleaseFolder, statement: bytes) -> str | None:
        """The dry run: the staged files and ``commit-plan.json`` beside them (its path)."""
        return str(Path(self.plan(release, statement).staged) / PLAN_FILE)

    def _plan(
        self, release: ReleaseFolder, statement: bytes, state: tuple[str | None, list[str], dict[str, str]]
    ) -> CommitPlan:
        head, remote, tags = state
        if tags and max(_version(t)[0] for t in tags) > release.summary.version:
            latest = max(tags, key=_version)
            raise ChannelError(
                f"{latest} is already on {self.target}; publishing {release.name} after it would "
                "rewrite history",
                field="release",
            )
        staged = self.staging_root / release.name
        tmp = staged.with_name(f".{release.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        add: list[PlannedFile] = []
        for relative in release.files():  # a gated bucket's data files are not among them
            source = release.path / relative
            destination = tmp / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not release.as_cut(relative):
                destination.write_bytes(release.read(relative))  # the card of gated buckets
            else:
                try:
                    os.link(source, destination)  # the release is immutable: a hard link is a safe copy
                except OSError:
                    shutil.copyfile(source, destination)
            add.append(PlannedFile(relative, sha256_file(destination), destination.stat().st_size))
        (tmp / STATEMENT).write_bytes(statement)
        add.append(PlannedFile(STATEMENT, hashlib.sha256(statement).hexdigest(), len(statement)))
        add.sort(key=lambda f: f.path_in_repo)
        adding = {f.path_in_repo for f in add}
        summary = release.summary
        plan = CommitPlan(
            repo_id=self.target,
            repo_type=REPO_TYPE,
            revision=self.revision,
            release=release.name,
            parent_commit=head,
            commit_message=f"Release {release.name}: {commit_title_counts(summary)}",
            commit_description=(
                f"{summary.coop} ({summary.node_id}). Every file's SHA-256 is in {STATEMENT}, signed by the "
                "co-op's Ed25519 key; files of withdrawn records are deleted in this same commit."
            ),
            tag=release.name,
            add=add,
            delete=sorted(p for p in remote if p not in adding and p not in _KEEP),
            staged=str(staged),
        )
        (tmp / PLAN_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(plan), indent=2) + b"\n")
        shutil.rmtree(staged, ignore_errors=True)
        tmp.rename(staged)
        return msgspec.structs.replace(plan, staged=str(staged))

    # -- publishing ---------------------------------------------------------------------

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        state = self._state()  # read once: the plan is made against exactly this head
        tags = state[2]
        if release.name in tags:
            return str(tags[release.name])
        return self.commit(self._plan(release, statement, state))

    def commit(self, plan: CommitPlan) -> str:
        """Send a plan as one commit (then tag it); a moved branch makes the Hub refuse it."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        staged = Path(plan.staged)
        operations: list[Any] = [
            CommitOperationAdd(f.path_in_repo, staged / f.path_in_repo) for f in plan.add
        ]
        operations += [CommitOperationDelete(path, is_folder=False) for path in plan.delete]
        parent = plan.parent_commit
        if parent is None:
            # A new repository: the Hub creates it with a first commit of its own (.gitattributes);
            # ours goes on top of exactly that one.
            self._call(
                "creating the repository",
                self.api.create_repo,
                plan.repo_id,
                repo_type=REPO_TYPE,
                exist_ok=True,
            )
            parent, files, _ = self._state()
            unplanned = sorted(set(files) - {f.path_in_repo for f in plan.add} - _KEEP)
            if unplanned:
                raise ChannelError(
                    f"{plan.repo_id} was filled by someone else while publishing ({', '.join(unplanned[:3])}); "
                    "nothing was committed: run publish again",
                    field="target",
                )
        info = self._call(
            "the commit",
            self.api.create_commit,
            plan.repo_id,
            operations,
            commit_message=plan.commit_message,
            commit_description=plan.commit_description,
            repo_type=REPO_TYPE,
            revision=plan.revision,
            parent_commit=parent,
        )
        oid = str(info.oid)
        self._call(
            "tagging the commit",
            self.api.create_tag,
            plan.repo_id,
            tag=plan.tag,
            tag_message=plan.commit_message,
            revision=oid,
            repo_type=REPO_TYPE,
            exist_ok=True,
        )
        return oid
