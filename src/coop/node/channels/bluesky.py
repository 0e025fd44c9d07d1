"""The Bluesky channel: one announcement post per release, and a few previews of its records.

``coop publish --channel bluesky`` posts, for each release the account has not announced yet,
"<coop> released vN: R records (licences) <link>" and then at most
``channels.bluesky_max_posts`` previews of records new in that release (highlighted ones first;
:mod:`coop.node.channels.previews` decides which records may be announced at all, and shows
only what the catalogue shows).  Each preview post is one row of the channel ledger
(:func:`coop.node.releases.channel_records.posted`, ref = the post's ``at://`` URI), so a record
is never posted twice.  At every publish (a new release or not) each post still up whose record
:func:`~coop.node.channels.previews.previews` would not show now -- withdrawn, its member
unticked *announce*, an embargo, a gated bucket or a joint action covers it -- is deleted and its
row marked ``retracted``.  A release is announced once per version: a revision (``vN-rK``) is
announced only when the account never announced vN (it was revised before its first post).

The account's app password comes from ``COOP_BLUESKY_PASSWORD`` or ``DATA/keys/bluesky``
(mode 0600); a dry run needs none and sends nothing.  ``atproto`` is imported only when
posting (it takes most of a second to load); its errors are translated once, in
:mod:`coop.node.channels.bluesky_request`.  The posts' text, their record keys, the one adapter
over ``atproto`` and the sending that writes the ledger hold the once-only rule together.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from coop.node.channels.base import Capabilities, ChannelError, ReleaseFolder, release_tag
from coop.node.channels.previews import Hidden, Preview, previews
from coop.node.releases.channel_reads import carried_seqs, cut_at, live_posts, published_releases
from coop.node.releases.model import ReleaseSummary

if TYPE_CHECKING:
    import sqlite3

    from coop.node.storage.store import Store

__all__ = [
    "CHANNEL",
    "MAX_GRAPHEMES",
    "PASSWORD_ENV",
    "Account",
    "BlueskyPublisher",
    "Draft",
    "announcement",
    "app_password",
    "post_rkey",
    "record_post",
]

CHANNEL: Final = "bluesky"
PASSWORD_ENV: Final = "COOP_BLUESKY_PASSWORD"  # noqa: S105 (a variable's name, not a secret)
PASSWORD_FILE: Final = "keys/bluesky"  # noqa: S105 (a path under DATA)
# A post holds at most 300 graphemes.  A grapheme is one or more code points, so a text of at
# most 300 code points always fits: counted that way, no grapheme segmentation is needed.
MAX_GRAPHEMES: Final = 300
_ELLIPSIS: Final = "…"
_TID_ALPHABET: Final = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable


def post_rkey(*, created_at: int, version: int, seq: int | None, node_id: str = "") -> str:
    """The record key of one post of a release: a TID (13 base32-sortable characters of a
    53-bit microsecond timestamp << 10 | a 10-bit clock id) made from the release alone, so a
    re-run asks the PDS for the same keys and a post already there is refused, not doubled.

    Timestamp: the release's ``created_at`` (s) in microseconds plus 0 for its announcement or
    ``seq + 1`` for a record's preview (the record, not its place in the list: a re-run skips
    the posts already in the ledger, so places shift); clock id: the version plus a number of
    the node (``node_id``) mod 1024, so two co-ops posting to one account in the same second
    rarely ask for the same key (and a key taken by another's post is read back as theirs)."""
    micros = created_at * 1_000_000 + (0 if seq is None else seq + 1)
    if not 0 <= micros < 1 << 53:
        raise ValueError(f"no TID for created_at={created_at}, seq={seq}")
    node = int(hashlib.sha256(node_id.encode()).hexdigest()[:4], 16) if node_id else 0
    value = micros << 10 | (version + node) % 1024
    return "".join(_TID_ALPHABET[(value >> shift) & 31] for shift in range(60, -1, -5))


class Draft(msgspec.Struct, frozen=True):
    """A post as it will be sent: its text and its links (UTF-8 byte ranges of the text)."""

    text: str
    links: tuple[tuple[int, int, str], ...] = ()
    seq: int | None = None  # the record it previews (None: a release announcement)


def _with_link(before: str, url: str) -> Draft:
    """``before`` then the link's own text, the link faceted over its bytes."""
    start = len(before.encode("utf-8"))
    return Draft(text=before + url, links=((start, start + len(url.encode("utf-8")), url),))


def _fit(text: str, room: int) -> str:
    """``text`` cut to ``room`` code points (an ellipsis marks a cut)."""
    if len(text) <= room:
        return text
    return text[: max(room - 1, 0)].rstrip() + _ELLIPSIS


def announcement(*, coop: str, release: ReleaseSummary, url: str, gated: frozenset[str]) -> Draft:
    """``<coop> released vN: R records (licences) <url>``: what a release's own post says -- the
    counts of its public page (/datasets/vN) and of the Atom feed, gated buckets included, a
    gated licence marked so (its files reach only grantees, as the page says)."""
    buckets = [b for b in release.buckets if b.records]
    count = sum(b.records for b in buckets)
    named = {b.license.value + (" gated" if b.license.value in gated else "") for b in buckets}
    licences = ", ".join(sorted(named))
    noun = "record" if count == 1 else "records"
    tail = f" released {release.name}: {count} {noun}" + (f" ({licences})" if licences else "") + " "
    room = MAX_GRAPHEMES - len(tail) - len(url)
    return _with_link(_fit(coop, max(room, 1)) + tail, url)


def record_post(preview: Preview) -> Draft:
    """``“<title>” — <label>, <licence> <url>``: one record's preview post."""
    tail = f"” — {preview.label}, {preview.license} "
    room = MAX_GRAPHEMES - 1 - len(tail) - len(preview.url)
    draft = _with_link(f"“{_fit(preview.title, max(room, 1))}{tail}", preview.url)
    return msgspec.structs.replace(draft, seq=preview.seq)


def app_password(root: Path, environ: dict[str, str] | None = None) -> str:
    """The account's app password: ``COOP_BLUESKY_PASSWORD``, else ``DATA/keys/bluesky`` (0600)."""
    env = os.environ if environ is None else environ
    if env.get(PASSWORD_ENV, "").strip():
        return env[PASSWORD_ENV].strip()
    path = root / PASSWORD_FILE
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ChannelError(
            f"set {PASSWORD_ENV} or write the account's app password to {PASSWORD_FILE} (mode 0600)",
            field=PASSWORD_ENV,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelError(f"cannot read {PASSWORD_FILE}: {exc}", field=PASSWORD_FILE) from exc
    if stat.S_IMODE(mode) & 0o077:
        raise ChannelError(
            f"{PASSWORD_FILE} must be readable by its owner only (chmod 600)", field=PASSWORD_FILE
        )
    if not text:
        raise ChannelError(f"{PASSWORD_FILE} is empty", field=PASSWORD_FILE)
    return text


class Account:
    """The Bluesky account, through ``atproto``: log in, post, delete.  The one adapter that
    calls the library; its errors become :class:`ChannelError` naming the setting to look at."""

    def __init__(self, service: str, handle: str, password: str, *, timeout: float = 20.0) -> None:
        from atproto_client import Client

        from coop.node.channels.bluesky_request import BoundedRequest, library_errors, translated

        self.handle = handle
        self.service = service
        self._client = Client(base_url=service, request=BoundedRequest(timeout=timeout))
        self._did = ""
        try:
            self._client.login(handle, password, fetch_bsky_profile=False)
            session = self._client._session  # the DID the session was made for
            self._did = session.did if session is not None else ""
        except library_errors() as exc:
            self.close()
            raise translated(exc, service=service, login=True) from exc
        if not self._did:
            self.close()
            raise ChannelError(f"{service} made no session for {handle}", field="channels.bluesky")

    def post(self, draft: Draft, *, rkey: str) -> str:
        """Send one post under record key ``rkey``; its ``at://`` URI.  A post already there
        under that key (an earlier run's, its answer lost) counts as sent: whatever a PDS answers
        for a taken key (the reference PDS: 500, see tests/xrpc_fake.py), the key is then read back."""
        from atproto_client import exceptions, models

        from coop.node.channels.bluesky_request import library_errors, redirect_of, translated

        facets = [
            models.AppBskyRichtextFacet.Main(
                features=[models.AppBskyRichtextFacet.Link(uri=url)],
                index=models.AppBskyRichtextFacet.ByteSlice(byte_start=start, byte_end=end),
            )
            for start, end, url in draft.links
        ]
        try:
            record = models.AppBskyFeedPost.Record(
                created_at=self._client.get_current_time_iso(),
                text=draft.text,
                langs=["en"],
                facets=facets or None,
            )
            sent = self._client.app.bsky.feed.post.create(self._did, record, rkey=rkey)
        except library_errors() as exc:
            answered = isinstance(exc, exceptions.RequestErrorBase) and exc.response is not None
            if not answered or redirect_of(exc) is not None or not self._exists(rkey):
                raise translated(exc, service=self.service) from exc
            return f"at://{self._did}/app.bsky.feed.post/{rkey}"
        return str(sent.uri)

    def _exists(self, rkey: str) -> bool:
        """Whether this account holds a post under ``rkey`` (a failed read: no)."""
        from coop.node.channels.bluesky_request import library_errors

        try:
            self._client.app.bsky.feed.post.get(self._did, rkey)
        except library_errors():
            return False
        return True

    def delete(self, uri: str) -> None:
        """Delete one post of this account (one already gone counts as deleted)."""
        from coop.node.channels.bluesky_request import library_errors, translated

        try:
            self._client.delete_post(uri)
        except library_errors() as exc:
            if "RecordNotFound" not in str(exc):
                raise translated(exc, service=self.service) from exc

    def close(self) -> None:
        self._client.request.close()


class PostingNode(Protocol):
    """What the channel reads of the node: its store, clock and public catalogue."""

    @property
    def store(self) -> Store: ...

    def now(self) -> int: ...

    def index_catalog(self) -> int: ...


class BlueskyPublisher:
    """The microblog as a channel (``Capabilities.posts``: it writes its own ledger rows)."""

    name = CHANNEL
    capabilities = Capabilities(posts=True)

    def __init__(
        self,
        target: str,
        *,
        node: PostingNode,
        coop: str,
        base_url: str,
        hidden: Hidden,
        service: str = "https://bsky.social",
        max_posts: int = 10,
        password: Callable[[], str],
        node_id: str = "",
    ) -> None:
        if not target.strip():
            raise ChannelError("name the Bluesky handle with --target or channels.bluesky", field="target")
        if not base_url.startswith(("https://", "http://")):
            raise ChannelError(
                "posts link to the node: set node.public_url or channels.site_node_url",
                field="channels.site_node_url",
            )
        self.target = target.strip().removeprefix("@")
        self.node = node
        self.coop = coop
        self.base_url = base_url.rstrip("/")
        self.hidden = hidden
        self.service = service
        self.max_posts = max(max_posts, 0)
        self.node_id = node_id
        self.password = password
        # Posts this run could not delete: seq -> the one-line reason (they stay un-retracted).
        self.failed: dict[int, str] = {}

    # -- what the account holds ------------------------------------------------------------

    def published(self) -> list[str]:
        """Releases announced on this account (its ``publications`` rows), oldest first."""

        return self.node.store.read(partial(published_releases, channel=CHANNEL, target=self.target))

    def drafts(self, release: ReleaseSummary) -> list[Draft]:
        """The posts publishing ``release`` sends: none when this account already announced
        its version (a revision only removes records), else its announcement and the previews
        of its records not posted yet."""
        announced = {tag[0] for tag in map(release_tag, self.published()) if tag is not None}
        if release.version in announced:
            return []
        while self.node.index_catalog():  # the catalogue holds every released record
            pass
        url = f"{self.base_url}/datasets/{release.name}"
        first = announcement(coop=self.coop, release=release, url=url, gated=self.hidden.gated)
        limit = self.max_posts

        def read(conn: sqlite3.Connection) -> list[Preview]:
            # Only records new in this release are previewed, at most max_posts of them: the
            # ledger rows of this release are few.
            posted = carried_seqs(conn, channel=CHANNEL, version=release.version)
            found = previews(
                conn,
                base_url=self.base_url,
                hidden=self.hidden,
                version=release.version,
                limit=limit + len(posted),
            )
            return [p for p in found if p.seq not in posted][:limit]

        return [first, *(record_post(p) for p in self.node.store.read(read))]

    def to_delete(self) -> list[tuple[int, str]]:
        """(seq, at-uri) of the posts still up whose record may not be announced now (withdrawn,
        its member said no, hidden by an embargo, a gated bucket or a joint action): what
        :func:`previews` would not show.  Deleted at the next publish, a new release or not."""
        while self.node.index_catalog():  # the catalogue is current: its rows decide
            pass

        def read(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            live = live_posts(conn, channel=CHANNEL)
            uids = [uid for _seq, _ref, uid in live if uid is not None]
            shown = previews(
                conn,
                base_url=self.base_url,
                hidden=self.hidden,
                uids=uids,
                limit=len(uids),
                highlighted_first=False,
            )
            still = {p.seq for p in shown}
            return [(seq, ref) for seq, ref, _uid in live if seq not in still]

        return self.node.store.read(read)

    # -- sending -------------------------------------------------------------------------

    def _account(self) -> Account:
        return Account(self.service, self.target, self.password())

    def sweep(self) -> list[str]:
        """Delete the posts whose records may no longer be announced; the URIs deleted."""
        gone = self.to_delete()
        if not gone:
            return []
        account = self._account()
        try:
            return self._delete(account, gone)
        finally:
            account.close()

    def _delete(self, account: Account, gone: Sequence[tuple[int, str]]) -> list[str]:
        """Delete each post and mark its row retracted; a post the PDS will not delete stays
        un-retracted (tried again at the next publish) and the rest go on: one stuck post never
        blocks the others, nor the release's announcement.  A refusal about the service itself
        (rate limited, unreachable, failing) stops the deletions: the rest wait for the next
        publish instead of pressing on.  Failures land in :attr:`failed`."""
        from coop.node.channels.bluesky_request import stops_the_run
        from coop.node.releases import channel_records

        deleted: list[str] = []
        done: set[int] = set()
        for seq, uri in gone:
            if seq in self.failed:
                continue  # failed already in this run: once is enough
            if uri:  # a row without a post (none here) only needs marking
                try:
                    account.delete(uri)
                except ChannelError as exc:
                    self.failed[seq] = str(exc)
                    if stops_the_run(exc):  # the service, not this post: the rest wait too
                        for later, _ in gone:
                            if later not in self.failed and later != seq and later not in done:
                                self.failed[later] = str(exc)
                        break
                    continue
            at = self.node.now()
            self.node.store.write(partial(channel_records.retracted, channel=CHANNEL, seqs=[seq], at=at))
            done.add(seq)
            deleted.append(uri)
        return deleted

    def deletion_warning(self) -> str | None:
        """``N deletions failed, retried at the next publish: <reason>``, or None."""
        if not self.failed:
            return None
        count = len(self.failed)
        noun = "deletion" if count == 1 else "deletions"
        return f"{count} {noun} failed, retried at the next publish: {next(iter(self.failed.values()))}"

    def stage(self, release: ReleaseFolder, statement: bytes) -> str | None:
        return None  # a dry run lists the posts (drafts) instead

    def publish(self, release: ReleaseFolder, statement: bytes) -> str:
        """Delete the posts of records no longer to be announced, then announce the release
        and preview its new records; the announcement's ``at://`` URI (``-``: the version was
        announced already)."""
        from coop.node.releases import channel_records

        summary = release.summary
        drafts = self.drafts(summary)
        # Every post of vN is keyed on vN's cut, whatever its revision: a run cut short after
        # vN's announcement, then vN revised, asks again for the key already there.
        cut = self.node.store.read(partial(cut_at, version=summary.version))
        created = summary.created_at if cut is None else cut
        account = self._account()
        try:
            self._delete(account, self.to_delete())
            ref = "-"
            for draft in drafts:
                rkey = post_rkey(
                    created_at=created, version=summary.version, seq=draft.seq, node_id=self.node_id
                )
                uri = account.post(draft, rkey=rkey)
                if draft.seq is None:
                    ref = uri
                    continue
                # One ledger row per post, as soon as it is out: a publish cut short never
                # posts the same record again.
                at = self.node.now()
                self.node.store.write(
                    partial(
                        channel_records.posted,
                        channel=CHANNEL,
                        posts=[(draft.seq, uri)],
                        version=release.summary.version,
                        at=at,
                    )
                )
            return ref
        finally:
            account.close()


def make_publisher(
    target: str,
    *,
    node: Any,
    service: str,
    max_posts: int,
    coop: str,
    base_url: str,
    hidden: Hidden,
    root: Path,
    node_id: str = "",
) -> BlueskyPublisher:
    """The channel for ``coop publish`` (the password read only when a post is sent)."""
    return BlueskyPublisher(
        target,
        node=node,
        coop=coop,
        base_url=base_url,
        hidden=hidden,
        service=service,
        max_posts=max_posts,
        password=lambda: app_password(root),
        node_id=node_id,
    )
