"""Running federated evaluation from the command line: requester keys, requests, reports.

``coop eval request`` builds and signs the request, then runs the Flower
ServerApp on either engine: the **simulation** engine (one virtual SuperNode
per ``--local-node URL,TOKEN_FILE``) or the **deployment** engine (``flwr
run`` against a SuperLink; the SuperNodes next to each co-op's node).  The
requester key never leaves this process: the ServerApp hands back the answers
it kept, and the report is checked and signed here.
"""

from __future__ import annotations

import io
import os
import secrets
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from coop.eval import (
    EvalError,
    Filters,
    ReportCheck,
    build_request,
    get_evaluator,
    open_request,
    render_markdown,
    verify_report,
)
from coop.eval.flower import MAX_WORDS, EvalJob, sign_report
from coop.eval.report import REPORT_TYPE, NodeAnswer, Report
from coop.governance import GovernanceError, public_key
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer
from coop.node.errors import InputError
from coop.node.evaluation import flower_run, ledger

__all__ = ["RequestOptions", "keygen", "markdown", "request", "verify"]

_LIFETIME: Final = 86_400


def keygen(path: Path) -> str:
    """A new requester key (an Ed25519 seed, mode 0600); returns its public key."""
    if path.exists():
        raise InputError(f"{path} exists: a key is never overwritten", field="FILE")
    seed = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, seed)
    finally:
        os.close(fd)
    return public_key(seed).hex()


def _read_key(path: Path) -> bytes:
    try:
        seed = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the key {path}: {exc.strerror}", field="--key") from None
    if len(seed) != 32:
        raise InputError(f"{path} is not a requester key (coop eval keygen)", field="--key")
    return seed


@dataclass(frozen=True, kw_only=True)
class RequestOptions:
    """What ``coop eval request`` was asked to do (its options, by name)."""

    key: str  # the requester key file (coop eval keygen)
    task: str
    model: str  # the model artifact file
    out: str  # where the signed report goes
    target: Sequence[str] | None = None  # node ids of the co-ops asked (a new request)
    purpose: str | None = None  # one line members read (a new request)
    resubmit: str | None = None  # a request signed before, run again
    label: Sequence[str] | None = None
    tag: Sequence[str] | None = None
    language: Sequence[str] | None = None
    local_node: Sequence[str] | None = None  # simulation engine: URL,TOKEN_FILE per node
    superlink: str | None = None  # deployment engine: the SuperLink's control API
    root_certificates: str | None = None
    shared_dir: str | None = None
    timeout: float = 120.0


def request(args: RequestOptions, *, progress: Callable[[str], None] | None = None) -> Path:
    """Build and sign a request (or take one signed before), run it on either engine, write the
    signed report to ``args.out`` (and its Markdown beside it); returns the report's path.

    ``progress`` hears each phase: request signed, the run, who answered and who declined why,
    the report verified.
    """
    say = progress or (lambda _line: None)
    seed = _read_key(Path(args.key))
    artifact = read_model(Path(args.model))
    evaluator = get_evaluator(args.task)  # an unknown task is refused here, before anything is sent
    evaluator.load(artifact)  # and so is a malformed artifact
    filters = Filters(
        labels=tuple(args.label or ()), tags=tuple(args.tag or ()), languages=tuple(args.language or ())
    )
    out = Path(args.out)
    if args.resubmit:
        # The same signed request again (say, once a co-op's admin has approved it).
        try:
            envelope = Path(args.resubmit).read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {args.resubmit}: {exc.strerror}", field="--resubmit") from None
    else:
        if not args.target or not args.purpose:
            raise InputError("a new request names --target and --purpose", field="--target")
        envelope = build_request(
            signer=Signer(seed),
            task=args.task,
            model_name=Path(args.model).name,
            artifact=artifact,
            targets=list(args.target),
            purpose=args.purpose,
            filters=filters,
            now=int(time.time()),
            lifetime=_LIFETIME,
            nonce=secrets.token_hex(12),
        )
    verified = open_request(
        envelope, now=int(time.time()), artifact=artifact
    )  # refuses a stale or mismatched one
    out.with_suffix(".request.json").write_bytes(envelope)
    ledger.record_request(Path(args.key), verified, out)  # coop eval requests --key lists it
    targets = len(verified.request.targets)
    say(f"request signed ({verified.hash[:12]}…) for {targets} co-op{'s' if targets != 1 else ''}")
    job = EvalJob(
        request=envelope,
        artifact=artifact,
        timeout=args.timeout,
        wait_for_nodes=len(args.local_node or ()) or len(verified.request.targets),
    )
    say("running on the deployment engine…" if args.superlink else "running on the simulation engine…")
    if args.superlink:
        answers = flower_run.deployment(
            job,
            superlink=args.superlink,
            root_certificates=args.root_certificates,
            shared_dir=args.shared_dir,
            say=say,
        )
    elif args.local_node:
        answers = flower_run.simulation(job, local_nodes=args.local_node, shared_dir=args.shared_dir, say=say)
    else:
        raise InputError("name --local-node (simulation) or --superlink (deployment)", field="--superlink")
    report = sign_report(verified, answers, now=int(time.time()), signer=Signer(seed))
    out.write_bytes(report)
    check = verify_report(
        report, finalize=evaluator.finalize, schema=evaluator.statistic_sensitivity().keys()
    )
    if check and check.report is not None:
        ledger.record_report(Path(args.key), check.report, out, now=int(time.time()))
    if check.report is not None:
        out.with_suffix(".md").write_text(render_markdown(check.report), encoding="utf-8")
        for line in answer_lines(check.report.answers):
            say(line)
    say("report verified" if check else "the report does NOT verify")
    return out


def read_model(path: Path) -> bytes:
    """The model artifact: a file as it is, or a folder packed as a tar whose bytes depend only on
    the files' names and contents (sorted, no times, owners or modes), so the same folder always
    has the same signed model hash."""
    try:
        if not path.is_dir():
            return path.read_bytes()
        files = sorted(
            child for child in path.iterdir() if child.is_file() and not child.name.startswith(".")
        )
        if not files:
            raise InputError(f"the model folder {path} holds no files", field="--model")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for child in files:
                data = child.read_bytes()
                info = tarfile.TarInfo(child.name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()
    except OSError as exc:
        raise InputError(f"cannot read the model {path}: {exc.strerror}", field="--model") from None


def answer_lines(answers: Sequence[NodeAnswer]) -> list[str]:
    """How the co-ops answered: "co-ops answering 3/5", then one line per decline and its reason."""
    answered = sum(1 for answer in answers if answer.decline is None)
    lines = [f"co-ops answering {answered}/{len(answers)}"]
    for answer in answers:
        if answer.decline is not None:
            who = answer.coop[:MAX_WORDS] or answer.node_id[:16]
            detail = f": {answer.detail[:MAX_WORDS]}" if answer.detail else ""
            lines.append(f"  {who} declined ({answer.decline.value}){detail}")
    return lines


def verify(path: Path, *, trust: list[str] | None) -> ReportCheck:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", field="REPORT") from None
    try:
        _, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=64 * 1024 * 1024)
        evaluator = get_evaluator(msgspec.json.decode(payload, type=Report).task)
    except (GovernanceError, EvalError, msgspec.DecodeError, msgspec.ValidationError):
        evaluator = None  # an unreadable report is verify_report's to describe
    return verify_report(
        data,
        finalize=evaluator.finalize if evaluator else None,
        schema=evaluator.statistic_sensitivity().keys() if evaluator else None,
        trusted_nodes=frozenset(trust) if trust else None,
    )


def markdown(path: Path) -> str:
    check = verify(path, trust=None)
    if check.report is None:
        return "\n".join(check.problems)
    return render_markdown(check.report)
