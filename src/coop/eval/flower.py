"""The Flower apps of federated evaluation (flwr 1.41 Message API): one round per evaluation.

The **ServerApp** sends one message, the evaluation (the signed request and the
model), to every connected SuperNode, and collects the replies as they arrive
(``push_messages``/``pull_messages``, bounded by the job's timeout).  It maps
each reply to a co-op from the reply itself: the co-op the ClientApp says it
serves and the ``node_id`` of the answer; an answer naming another co-op is a
``bad_attestation`` decline.  Two replies for one co-op: an answer whose
attestation checks out wins over anything else (a hostile SuperNode cannot
pre-empt a real answer with an unsigned decline); otherwise the first stays.
A named co-op no reply claimed is reported as unreachable.  A reply's answer
over :data:`MAX_ANSWER_BYTES` is dropped as unclaimed, and a decline's words are
cut to :data:`MAX_WORDS` characters: one co-op cannot crowd out the others.

The ServerApp **never signs**: in deployment it runs in the SuperLink's
SuperExec, whose operator must not hold the builder's key.  It hands back the
answers it kept (:func:`encode_answers`), and the requester checks every
attestation again and signs the report on its own machine (:func:`sign_report`,
which calls :func:`build_report` against the keys the request names).

The **ClientApp** holds no data and no policy.  It reads the co-ops the request
names (the envelope's payload, not verified: its node verifies everything),
asks its co-op node who it is (once per process) and, when its co-op is not
named, replies at once with a small "not named" record and never sends the
model to its node.  Otherwise it forwards the request and the model to the
node's local evaluation interface (loopback, token) and returns the node's
signed answer as it is.

Settings come from Flower's configs.  A deployed SuperNode names its node with
node config ``coop-eval-url`` and ``coop-eval-token-file``; in the simulation
runtime the run config's ``coop-local-nodes`` lists ``URL,TOKEN_FILE`` per
virtual SuperNode (picked by ``partition-id``).  The ServerApp reads run config
``coop-request-file``, ``coop-artifact-file``, ``coop-answers-file``,
``coop-progress-file`` (JSON lines: what happened so far) and ``coop-timeout``; it
creates the files it writes mode 0600, never through a symlink.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, Protocol

import httpx
import msgspec
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from coop.eval.errors import AttestationError
from coop.eval.evaluators import get as get_evaluator
from coop.eval.report import Decline, Expected, NodeAnswer, build_report, check_attestation
from coop.eval.request import MAX_REQUEST_BYTES, REQUEST_TYPE, EvalRequest, VerifiedRequest, open_request
from coop.governance import GovernanceError
from coop.governance.envelope import open_envelope
from coop.governance.signing import Signer

__all__ = [
    "ANSWER_TIMEOUT",
    "EVALUATE",
    "MAX_ANSWERS_BYTES",
    "MAX_ANSWER_BYTES",
    "MAX_WORDS",
    "EvalJob",
    "EvalSource",
    "LocalEndpoint",
    "ProgressEvent",
    "app_client",
    "app_server",
    "decode_answers",
    "encode_answers",
    "make_client_app",
    "run_eval",
    "sign_report",
    "write_private",
]

EVALUATE: Final = "query.coop_eval"
# One co-op's answer: an lm-preference attestation is ~100 KB; anything far above is not an answer.
MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
# What the ServerApp hands back: every named co-op's answer (and the requester reads no more).
MAX_ANSWERS_BYTES: Final = 64 * 1024 * 1024
# A decline's reason and a co-op's name, as kept, told and reported.
MAX_WORDS: Final = 300
# How long a ClientApp waits for its node's answer: above the node's own limit (eval.timeout_s,
# 600 s by default), so the node's limit fires first and its decline says why.
ANSWER_TIMEOUT: Final = 660.0
_ANSWER: Final = msgspec.json.Decoder(NodeAnswer)
_ANSWERS: Final = msgspec.json.Decoder(list[NodeAnswer])
# What a ClientApp knows of its co-op node, asked once per process (url -> node id).
_IDENTITIES: dict[str, str] = {}


class LocalEndpoint(msgspec.Struct, frozen=True):
    """Where a SuperNode reaches its co-op node: a loopback URL and the eval token."""

    url: str
    token: str

    def identity(self) -> str:
        known = _IDENTITIES.get(self.url)
        if known is None:
            with httpx.Client(timeout=10) as client:
                response = client.get(f"{self.url}/api/v1/eval/local/identity", headers=self._auth())
                response.raise_for_status()
                known = _IDENTITIES[self.url] = str(response.json()["node_id"])
        return known

    def answer(self, request: bytes, artifact: bytes) -> bytes:
        with httpx.Client(timeout=httpx.Timeout(ANSWER_TIMEOUT, connect=10.0)) as client:
            body = msgspec.json.encode(
                {"request": msgspec.Raw(request), "artifact": base64.b64encode(artifact).decode()}
            )
            response = client.post(
                f"{self.url}/api/v1/eval/local",
                content=body,
                headers={**self._auth(), "Content-Type": "application/json"},
            )
            response.raise_for_status()
            return response.content

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def parse_local_node(text: str) -> tuple[str, str]:
    """``URL,TOKEN_FILE`` as (url, token file); ValueError when it is not that."""
    url, _, token_file = text.strip().partition(",")
    if not url.startswith("http") or not token_file:
        raise ValueError("a local node is URL,TOKEN_FILE")
    return url.rstrip("/"), token_file


def _endpoint(url: str, token_file: str) -> LocalEndpoint:
    token = Path(token_file).read_text(encoding="ascii").strip()
    return LocalEndpoint(url=url.rstrip("/"), token=token)


def endpoint_from_context(context: Context) -> LocalEndpoint:
    """A deployed SuperNode: ``--node-config "coop-eval-url='...' coop-eval-token-file='...'"``;
    a virtual one in the simulation runtime: its ``partition-id`` in the run config's
    ``coop-local-nodes`` (``URL,TOKEN_FILE`` entries separated by ``;``)."""
    if "coop-eval-url" in context.node_config:
        return _endpoint(
            str(context.node_config["coop-eval-url"]), str(context.node_config["coop-eval-token-file"])
        )
    entries = [e for e in str(context.run_config.get("coop-local-nodes", "")).split(";") if e.strip()]
    partition = int(context.node_config["partition-id"])
    return _endpoint(*parse_local_node(entries[partition]))


class EvalSource(Protocol):
    """What a ClientApp can reach: its co-op node's identity and its answers (never records)."""

    def identity(self) -> str: ...

    def answer(self, request: bytes, artifact: bytes) -> bytes: ...


class _Targets(msgspec.Struct):
    targets: tuple[str, ...] = ()


def named_targets(request: bytes) -> frozenset[str]:
    """The co-ops a request names, read without verifying it (the node verifies everything)."""
    try:
        _, payload = open_envelope(request, payload_type=REQUEST_TYPE, max_bytes=MAX_REQUEST_BYTES)
        return frozenset(msgspec.json.decode(payload, type=_Targets).targets)
    except (GovernanceError, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return frozenset()


def make_client_app(endpoint_of: Callable[[Context], EvalSource]) -> ClientApp:
    app = ClientApp()

    @app.query("coop_eval")
    def evaluate(message: Message, context: Context) -> Message:
        record = message.content.config_records["eval"]
        request = record["request"]
        artifact = record["artifact"]
        if not isinstance(request, bytes) or not isinstance(artifact, bytes):
            raise TypeError("an evaluation message carries the request and the model as bytes")
        source = endpoint_of(context)
        node_id = source.identity()
        if node_id not in named_targets(request):
            # Not asked: the model never reaches this co-op's node.
            content = RecordDict({"not_named": ConfigRecord({"node_id": node_id})})
            return Message(content, reply_to=message)
        answer = source.answer(request, artifact)
        content = RecordDict({"answer": ConfigRecord({"answer": answer, "node_id": node_id})})
        return Message(content, reply_to=message)

    return app


class EvalJob(msgspec.Struct, frozen=True):
    """Everything the ServerApp needs: the signed request and the model (never a key)."""

    request: bytes
    artifact: bytes
    timeout: float = 120.0
    wait_for_nodes: int = 0  # wait (bounded by timeout) until this many SuperNodes are connected
    poll: float = 0.5  # seconds between two pulls of the replies


class ProgressEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One step of a run, as the ServerApp sees it: ``sent``, ``answer`` (one per co-op's reply
    as it arrives), ``done`` or ``error``."""

    event: str
    named: int = 0  # co-ops the request names
    supernodes: int = 0  # SuperNodes the evaluation was sent to
    pushed: int = 0  # messages pushed so far (one round: one per SuperNode)
    message_types: tuple[str, ...] = ()
    answered: int = 0  # named co-ops whose attestation checks out, so far
    replies: int = 0  # replies received so far
    coop_id: str = ""
    coop: str = ""
    decline: str | None = None
    detail: str | None = None


def _nodes(grid: Grid, job: EvalJob) -> list[int]:
    deadline = time.monotonic() + job.timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= job.wait_for_nodes or time.monotonic() > deadline:
            return nodes
        time.sleep(1.0)


class _Answers:
    """The one answer kept per named co-op, by the rule in the module's docstring."""

    def __init__(self, request: EvalRequest, request_hash: str) -> None:
        self.expected = Expected(
            request_hash=request_hash,
            task=request.task,
            model_sha256=request.model_sha256,
            targets=frozenset(request.targets),
            schema=frozenset(get_evaluator(request.task).statistic_sensitivity()),
        )
        self.kept: dict[str, NodeAnswer] = {}
        self.good: set[str] = set()  # co-ops whose kept answer's attestation checks out
        self.unclaimed = 0  # replies that failed or named no co-op: a SuperNode we cannot place

    def add(self, reply: Message) -> NodeAnswer | None:
        """Take one reply; the answer it makes a co-op's (None when it changes nothing)."""
        records = reply.content.config_records if not reply.has_error() else {}
        if "not_named" in records:
            return None
        record = records.get("answer")
        value = record.get("answer") if record is not None else None
        claimed = record.get("node_id") if record is not None else None
        if not isinstance(value, bytes) or len(value) > MAX_ANSWER_BYTES:
            self.unclaimed += 1  # no answer, or one too big to be an answer: never read
            return None
        try:
            answer: NodeAnswer | None = _ANSWER.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            answer = None
        coop_id = claimed if isinstance(claimed, str) else answer.node_id if answer else None
        if coop_id is None or coop_id not in self.expected.targets:
            self.unclaimed += 1
            return None
        if answer is None:
            answer = NodeAnswer(
                node_id=coop_id, decline=Decline.BAD_ATTESTATION, detail="an unreadable answer"
            )
        elif answer.node_id != coop_id:
            answer = NodeAnswer(
                node_id=coop_id, decline=Decline.BAD_ATTESTATION, detail="an answer naming another co-op"
            )
        answer = _bounded(answer)
        good = self._checks(answer)
        if coop_id in self.kept and (coop_id in self.good or not good):
            return None  # the first stays, unless this one attests and the first did not
        self.kept[coop_id] = answer
        if good:
            self.good.add(coop_id)
        return answer

    def _checks(self, answer: NodeAnswer) -> bool:
        if answer.attestation is None or answer.decline is not None:
            return False
        try:
            check_attestation(answer.attestation, node_id=answer.node_id, expected=self.expected)
        except AttestationError:
            return False
        return True


def _bounded(answer: NodeAnswer) -> NodeAnswer:
    """The answer with its co-op's name and its reason cut to :data:`MAX_WORDS` characters (the
    attestation, which names the co-op itself, is kept whole)."""
    detail = answer.detail[:MAX_WORDS] if answer.detail is not None else None
    if detail == answer.detail and len(answer.coop) <= MAX_WORDS:
        return answer
    return msgspec.structs.replace(answer, detail=detail, coop=answer.coop[:MAX_WORDS])


def run_eval(
    grid: Grid,
    job: EvalJob,
    *,
    now: int,
    observe: Callable[[Message], None] | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> list[NodeAnswer]:
    """Send the evaluation to every SuperNode (one round) and return the answer kept for each named
    co-op (unsigned: :func:`sign_report` makes the report where the requester's key is).

    ``observe`` sees every reply as it arrives (tests inspect what left the nodes);
    ``progress`` hears each step (:class:`ProgressEvent`).
    """
    tell = progress or (lambda _event: None)
    verified = open_request(job.request, now=now, artifact=job.artifact)
    request = verified.request
    named = len(request.targets)
    nodes = _nodes(grid, job)
    content = ConfigRecord({"request": job.request, "artifact": job.artifact})
    messages = [
        Message(RecordDict({"eval": content}), dst_node_id=node, message_type=EVALUATE) for node in nodes
    ]
    waiting = {str(i) for i in (grid.push_messages(messages) if messages else ()) if i}
    tell(
        ProgressEvent(
            event="sent", named=named, supernodes=len(nodes), pushed=len(messages), message_types=(EVALUATE,)
        )
    )
    answers = _Answers(request, verified.hash)
    replies = 0
    deadline = time.monotonic() + job.timeout
    while waiting:
        for reply in grid.pull_messages(waiting):
            waiting.discard(reply.metadata.reply_to_message_id)
            replies += 1
            if observe is not None:
                observe(reply)
            kept = answers.add(reply)
            if kept is not None:
                tell(
                    ProgressEvent(
                        event="answer",
                        named=named,
                        answered=len(answers.good),
                        replies=replies,
                        coop_id=kept.node_id,
                        coop=kept.coop,
                        decline=kept.decline.value if kept.decline else None,
                        detail=kept.detail,
                    )
                )
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(max(0.0, min(job.poll, deadline - time.monotonic())))
    final = dict(answers.kept)
    late = bool(waiting) or answers.unclaimed > 0
    for coop_id in request.targets:
        if coop_id not in final:
            detail = "no answer in time" if late else "no SuperNode serves this co-op"
            final[coop_id] = NodeAnswer(node_id=coop_id, decline=Decline.UNREACHABLE, detail=detail)
    tell(
        ProgressEvent(
            event="done",
            named=named,
            supernodes=len(nodes),
            pushed=len(messages),
            message_types=(EVALUATE,),
            answered=len(answers.good),
            replies=replies,
        )
    )
    return list(final.values())


def sign_report(
    verified: VerifiedRequest, answers: Sequence[NodeAnswer], *, now: int, signer: Signer
) -> bytes:
    """The signed report over the answers a run kept: every attestation checked again against the
    keys the request names, on the requester's machine, with the requester's key."""
    request = verified.request
    evaluator = get_evaluator(request.task)
    return build_report(
        request_envelope=verified.envelope,
        request_hash=verified.hash,
        task=request.task,
        model_sha256=request.model_sha256,
        purpose=request.purpose,
        answers=answers,
        finalize=evaluator.finalize,
        schema=evaluator.statistic_sensitivity().keys(),
        created_at=now,
        signer=signer,
    )


_EVENT: Final = msgspec.json.Encoder()


def encode_answers(answers: Sequence[NodeAnswer]) -> bytes:
    """What the ServerApp hands back: the answers it kept, as a JSON list."""
    return _EVENT.encode(list(answers))


def decode_answers(data: bytes) -> list[NodeAnswer]:
    """The answers a ServerApp handed back; ValueError when they are too many bytes or malformed."""
    if len(data) > MAX_ANSWERS_BYTES:
        raise ValueError(f"the answers are over {MAX_ANSWERS_BYTES} bytes")
    try:
        return _ANSWERS.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"the answers are malformed: {exc}") from None


_PRIVATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def _private(path: Path, *, append: bool = False) -> Iterator[int]:
    """A new file only its owner reads (0600 whatever the umask), never opened through a symlink."""
    fd = os.open(path, _PRIVATE | (os.O_APPEND if append else 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        yield fd
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` whole: a new 0600 file at a temp name beside it, renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        with _private(tmp) as fd:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _job_from_run_config(context: Context) -> tuple[EvalJob, Path, Path | None]:
    config = context.run_config
    job = EvalJob(
        request=Path(str(config["coop-request-file"])).read_bytes(),
        artifact=Path(str(config["coop-artifact-file"])).read_bytes(),
        timeout=float(config.get("coop-timeout", 120.0)),
        wait_for_nodes=int(config.get("coop-wait-for-nodes", 0)),
    )
    progress = str(config.get("coop-progress-file", ""))
    return job, Path(str(config["coop-answers-file"])), Path(progress) if progress else None


def serve(grid: Grid, job: EvalJob, out: Path, progress_file: Path | None, *, now: int) -> None:
    """The ServerApp's work: run the round, telling each step in ``progress_file`` (created here),
    and write the answers kept to ``out``."""
    with contextlib.ExitStack() as stack:
        fd = stack.enter_context(_private(progress_file, append=True)) if progress_file else None

        def tell(event: ProgressEvent) -> None:
            if fd is not None:
                os.write(fd, _EVENT.encode(event) + b"\n")

        try:
            answers = run_eval(grid, job, now=now, progress=tell)
        except Exception as exc:
            tell(ProgressEvent(event="error", detail=f"{type(exc).__name__}: {exc}"[:400]))
            raise
    write_private(out, encode_answers(answers))


def _deployed_server() -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        job, out, progress_file = _job_from_run_config(context)
        serve(grid, job, out, progress_file, now=int(time.time()))

    return app


# The apps our Flower App names in its pyproject ([tool.flwr.app.components]).
app_client: Final = make_client_app(endpoint_from_context)
app_server: Final = _deployed_server()
