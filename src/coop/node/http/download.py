"""Files and fixed bodies served the way download tools expect: HEAD, ranges, validators.

A handler returns :class:`Download` for a file on disk or bytes made per request; at send time
it answers GET and HEAD alike (HEAD without the body), with ``Accept-Ranges: bytes``, a strong
``ETag``, ``Last-Modified`` (files), one ``Range`` as 206 (several: the whole file, 200),
416 with ``Content-Range: bytes */size``, and 304/412 from the conditional headers
(:func:`coop.node.files.evaluate_request`).  File bodies are streamed, never read whole.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final, Literal

import anyio
import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from coop.node.errors import NotFoundError
from coop.node.files import Answer, evaluate_request
from coop.node.http.problems import PROBLEM_JSON

__all__ = ["Download", "static_file"]

_CHUNK: Final = 256 * 1024
_ENCODER: Final = msgspec.json.Encoder()
# Kept on a 304 (RFC 9110 §15.4.5): validators and what describes the representation's use.
_NOT_BODY: Final = frozenset({"content-type", "content-length", "content-range", "content-encoding"})


async def _file_chunks(
    path: Path, first: int, length: int, fingerprint: tuple[int, int]
) -> AsyncIterator[bytes]:
    """``length`` bytes of ``path`` from ``first``; stops short if the file changed since it was
    looked at (the client then sees a short body against Content-Length, never mixed bytes)."""
    async with await anyio.open_file(path, "rb") as handle:
        stat = os.fstat(handle.wrapped.fileno())
        if (stat.st_size, stat.st_mtime_ns) != fingerprint:
            return
        await handle.seek(first)
        remaining = length
        while remaining > 0:
            chunk = await handle.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


async def _bytes_chunks(body: bytes, first: int, length: int) -> AsyncIterator[bytes]:
    yield body[first : first + length]


class Download(Response[bytes]):
    """A file (``Path``) or a body made per request (``bytes``), served with ranges and validators.

    ``etag`` is the strong validator without quotes (e.g. the file's SHA-256); by default it
    is the size and modification time of a file, or the SHA-256 of a body.
    """

    def __init__(
        self,
        source: Path | bytes,
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        filename: str | None = None,
        disposition: Literal["inline", "attachment"] = "inline",
    ) -> None:
        super().__init__(b"", media_type=media_type, headers=dict(headers or {}))
        self.source = source
        if isinstance(source, Path):
            try:
                stat = source.stat()
            except OSError:
                raise NotFoundError(f"no file {source.name!r} here", field="path") from None
            if not os.path.isfile(source):
                raise NotFoundError(f"no file {source.name!r} here", field="path")
            self.size = stat.st_size
            self.modified: int | None = int(stat.st_mtime)
            self.fingerprint = (stat.st_size, stat.st_mtime_ns)
            tag = etag or f"{stat.st_size:x}-{stat.st_mtime_ns:x}"
        else:
            self.size = len(source)
            self.modified = None
            self.fingerprint = (len(source), 0)
            tag = etag or hashlib.sha256(source).hexdigest()
        self.etag = f'"{tag}"'
        if filename is not None:
            self.headers.setdefault("Content-Disposition", f'{disposition}; filename="{filename}"')

    def _chunks(self, first: int, length: int) -> AsyncIterator[bytes]:
        if isinstance(self.source, Path):
            return _file_chunks(self.source, first, length, self.fingerprint)
        return _bytes_chunks(self.source, first, length)

    def to_asgi_response(
        self,
        app: Any,
        request: Request[Any, Any, Any],
        *,
        background: Any = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        cookies: Iterable[Cookie] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: Any = None,
        status_code: int | None = None,
        type_encoders: Any = None,
    ) -> ASGIResponse:
        head = request.method == "HEAD"
        merged = {k.lower(): v for k, v in {**(headers or {}), **self.headers}.items()}
        merged["accept-ranges"] = "bytes"
        merged["etag"] = self.etag
        if self.modified is not None:
            merged["last-modified"] = formatdate(self.modified, usegmt=True)
        plan = evaluate_request(request.headers, etag=self.etag, modified=self.modified, size=self.size)
        jar = list(self.cookies) + list(cookies or ())
        if plan.answer in (Answer.NOT_MODIFIED, Answer.PRECONDITION_FAILED):
            kept = {k: v for k, v in merged.items() if k not in _NOT_BODY}
            status = 304 if plan.answer is Answer.NOT_MODIFIED else 412
            if status == 304:
                return ASGIResponse(status_code=304, headers=kept, cookies=jar)
            return self._problem(
                head,
                kept,
                jar,
                412,
                "precondition-failed",
                "Precondition failed",
                "the file changed: its ETag no longer matches If-Match",
                "If-Match",
            )
        if plan.answer is Answer.UNSATISFIABLE:
            assert plan.range is not None
            kept = {k: v for k, v in merged.items() if k not in _NOT_BODY}
            kept["content-range"] = plan.range.content_range()
            return self._problem(
                head,
                kept,
                jar,
                416,
                "range-not-satisfiable",
                "Range not satisfiable",
                f"the file has {self.size} bytes: no byte of this range exists",
                "Range",
            )
        first, length, status = 0, self.size, 200
        if plan.answer is Answer.PARTIAL:
            assert plan.range is not None
            first, length, status = plan.range.first, plan.range.length, 206
            merged["content-range"] = plan.range.content_range()
        content_type = self.media_type or "application/octet-stream"
        if (
            isinstance(content_type, str)
            and content_type.startswith("text/")
            and "charset" not in content_type
        ):
            content_type = f"{content_type}; charset=utf-8"
        merged["content-type"] = str(content_type)
        merged["content-length"] = str(length)
        return ASGIStreamingResponse(
            iterator=self._chunks(first, length),
            status_code=status,
            headers=merged,
            cookies=jar,
            media_type=str(content_type),
            is_head_response=head,
            background=self.background or background,
        )

    def _problem(
        self,
        head: bool,
        headers: dict[str, str],
        cookies: list[Cookie],
        status: int,
        slug: str,
        title: str,
        detail: str,
        field: str,
    ) -> ASGIResponse:
        body = _ENCODER.encode(
            {
                "type": f"/problems/{slug}",
                "title": title,
                "status": status,
                "detail": detail,
                "field": field,
                "errors": [{"field": field, "detail": detail}],
            }
        )
        headers["content-type"] = PROBLEM_JSON
        headers["content-length"] = str(len(body))
        return ASGIResponse(
            status_code=status,
            headers=headers,
            cookies=cookies,
            body=b"" if head else body,
            is_head_response=head,
            media_type=PROBLEM_JSON,
        )


def static_file(root: Path, relative: str) -> Download:
    """A file under ``root`` named by a URL path (nothing outside it, no hidden or odd names)."""
    parts = [p for p in relative.split("/") if p]
    bad = (
        not parts
        or any(p in (".", "..") or p.startswith(".") for p in parts)
        or any(not ch.isprintable() or ch == "\\" for ch in relative)
    )
    base = root.resolve()
    try:
        target = base.joinpath(*parts).resolve() if not bad else base
        found = not bad and target.is_relative_to(base) and target.is_file()
    except OSError:  # a name too long for the file system, and its kin: nothing there
        found = False
    if not found:
        raise NotFoundError(f"no static file {relative[:80]!r}", field="path")
    media, _ = mimetypes.guess_type(target.name)
    return Download(target, media_type=media or "application/octet-stream")
