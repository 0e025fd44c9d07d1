"""The requester's own ledger: every request ``coop eval request`` signed, and where each stands.

One JSON file per request in a folder beside the requester key (``KEY.requests/``, mode 0700;
files 0600, written whole by a rename): the request's hash, task, model, targets, purpose, when it
was made and expires, where its report is, and, from the latest verified report, each targeted
co-op's answer: answered (with its record count), declined (the reason and its detail) or no
answer.  A request with no report yet is pending, and expired once past its expiry.
"""

from __future__ import annotations

import enum
import os
import secrets
from pathlib import Path
from typing import Final

import msgspec

from coop.eval import Decline, Report, VerifiedRequest, open_attestation
from coop.governance import GovernanceError
from coop.node.errors import InputError, StorageError

__all__ = [
    "LedgerEntry",
    "RequestState",
    "TargetAnswer",
    "TargetState",
    "entries",
    "ledger_dir",
    "record_report",
    "record_request",
]

_HASH_LEN: Final = 64


class TargetState(enum.StrEnum):
    """How one targeted co-op answered in the latest report."""

    ANSWERED = "answered"
    DECLINED = "declined"
    NO_ANSWER = "no answer"


class RequestState(enum.StrEnum):
    """Where a request stands for its requester."""

    PENDING = "pending"  # no report yet
    EXPIRED = "expired"  # no report, and past its expiry
    ANSWERED = "answered"  # at least one co-op answered
    DECLINED = "declined"  # none answered, at least one declined
    NO_ANSWER = "no answer"  # none answered or declined


class TargetAnswer(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    state: TargetState = TargetState.NO_ANSWER
    coop: str = ""
    records: int | None = None
    reason: str | None = None
    detail: str | None = None


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    hash: str
    task: str
    model_name: str
    model_sha256: str
    targets: tuple[str, ...]
    purpose: str
    created_at: int
    expires_at: int
    report: str  # where the signed report is (or will be) written
    reported_at: int | None = None  # when the latest verified report was recorded
    answers: tuple[TargetAnswer, ...] = ()
    state: RequestState = RequestState.PENDING  # as of reading (entries() sets it)


_DECODER: Final = msgspec.json.Decoder(LedgerEntry)
_ENCODER: Final = msgspec.json.Encoder()


def ledger_dir(key: Path) -> Path:
    """``KEY.requests/`` beside the requester key."""
    return key.with_name(key.name + ".requests")


def _folder(key: Path) -> Path:
    folder = ledger_dir(key)
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
    except OSError as exc:
        raise StorageError(f"cannot make {folder}: {exc.strerror}") from None
    return folder


def _write(folder: Path, entry: LedgerEntry) -> Path:
    """The entry's file, replaced whole (a reader never sees half of it), mode 0600."""
    target = folder / f"{entry.hash}.json"
    tmp = folder / f".{entry.hash}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _ENCODER.encode(msgspec.structs.replace(entry, state=RequestState.PENDING)))
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return target


def _read(path: Path) -> LedgerEntry | None:
    try:
        return _DECODER.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None  # a file someone else put there is not ours to list


def record_request(key: Path, verified: VerifiedRequest, report: Path) -> Path:
    """Note a request just signed (or run again: its answers so far are kept)."""
    folder = _folder(key)
    request = verified.request
    earlier = _read(folder / f"{verified.hash}.json")
    entry = LedgerEntry(
        hash=verified.hash,
        task=request.task,
        model_name=request.model_name,
        model_sha256=request.model_sha256,
        targets=request.targets,
        purpose=request.purpose,
        created_at=request.created_at,
        expires_at=request.expires_at,
        report=str(report.resolve()),
        reported_at=earlier.reported_at if earlier else None,
        answers=earlier.answers if earlier else (),
    )
    return _write(folder, entry)


def _answers(report: Report, targets: tuple[str, ...]) -> tuple[TargetAnswer, ...]:
    by_node = {answer.node_id: answer for answer in report.answers}
    result = []
    for node_id in targets:
        answer = by_node.get(node_id)
        if answer is None:
            result.append(TargetAnswer(node_id=node_id))
        elif answer.attestation is not None:
            try:
                attestation, _ = open_attestation(answer.attestation.encode())
                records: int | None = attestation.records
                coop = attestation.coop or answer.coop
            except (GovernanceError, msgspec.DecodeError, msgspec.ValidationError, UnicodeError):
                records, coop = None, answer.coop
            result.append(
                TargetAnswer(node_id=node_id, state=TargetState.ANSWERED, coop=coop, records=records)
            )
        elif answer.decline is None or answer.decline is Decline.UNREACHABLE:
            result.append(TargetAnswer(node_id=node_id, coop=answer.coop, detail=answer.detail))
        else:
            result.append(
                TargetAnswer(
                    node_id=node_id,
                    state=TargetState.DECLINED,
                    coop=answer.coop,
                    reason=answer.decline.value,
                    detail=answer.detail,
                )
            )
    return tuple(result)


def record_report(key: Path, report: Report, path: Path, *, now: int) -> Path | None:
    """Note each co-op's answer from a verified report; None when the request is not in the ledger."""
    folder = _folder(key)
    entry = _read(folder / f"{report.request_hash}.json")
    if entry is None:
        return None
    updated = msgspec.structs.replace(
        entry, report=str(path.resolve()), reported_at=now, answers=_answers(report, entry.targets)
    )
    return _write(folder, updated)


def _state(entry: LedgerEntry, now: int) -> RequestState:
    if entry.reported_at is None:
        return RequestState.EXPIRED if now >= entry.expires_at else RequestState.PENDING
    states = {answer.state for answer in entry.answers}
    if TargetState.ANSWERED in states:
        return RequestState.ANSWERED
    if TargetState.DECLINED in states:
        return RequestState.DECLINED
    return RequestState.NO_ANSWER


def entries(key: Path, *, now: int) -> list[LedgerEntry]:
    """Every request of this key, newest first, each with its state as of ``now``."""
    if not key.is_file():
        raise InputError(f"{key} is not a requester key (coop eval keygen)", field="--key")
    folder = ledger_dir(key)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        if len(path.stem) != _HASH_LEN:
            continue
        entry = _read(path)
        if entry is not None:
            found.append(msgspec.structs.replace(entry, state=_state(entry, now)))
    return sorted(found, key=lambda e: (-e.created_at, e.hash))
