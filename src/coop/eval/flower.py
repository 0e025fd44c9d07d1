"""The Flower apps of federated evaluation (flwr 1.41 Message API).

The **ClientApp** runs at every SuperNode but holds no data and no policy: it
forwards the signed request and the model to its co-op node's local
evaluation interface (loopback, token) and returns the node's signed answer
as it is.  Whatever code a requester ships as ClientApp, the node decides.

The **ServerApp** asks every connected SuperNode which co-op it serves, sends
the request only to the co-ops the request names, collects the answers
(a node that does not answer is reported as such), checks every attestation
against the key of the co-op the request names (a bad one is reported as a
``bad_attestation`` decline), sums the attested statistics and signs the report.

Deployment reads its settings from Flower's configs: node config
``coop-eval-url`` and ``coop-eval-token-file`` at each SuperNode; run config
``coop-request-file``, ``coop-artifact-file``, ``coop-signer-key-file``,
``coop-report-file`` and ``coop-timeout`` for the ServerApp.  The simulation
builds the same apps around Python values (:func:`make_client_app`,
:func:`make_server_app`).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

import httpx
import msgspec
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from coop.eval.evaluators import get as get_evaluator
from coop.eval.report import Decline, NodeAnswer, build_report
from coop.eval.request import open_request
from coop.governance.signing import Signer

__all__ = [
    "EvalJob",
    "EvalSource",
    "LocalEndpoint",
    "app_client",
    "app_server",
    "make_client_app",
    "make_server_app",
    "run_eval",
]

IDENTIFY: Final = "query.coop_identify"
EVALUATE: Final = "query.coop_eval"
_ANSWER: Final = msgspec.json.Decoder(NodeAnswer)


class LocalEndpoint(msgspec.Struct, frozen=True):
    """Where a SuperNode reaches its co-op node: a loopback URL and the eval token."""

    url: str
    token: str

    def identity(self) -> str:
        with httpx.Client(timeout=10) as client:
            response = client.get(f"{self.url}/api/v1/eval/local/identity", headers=self._auth())
            response.raise_for_status()
            return str(response.json()["node_id"])

    def answer(self, request: bytes, artifact: bytes) -> bytes:
        with httpx.Client(timeout=600) as client:
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


def endpoint_from_node_config(context: Context) -> LocalEndpoint:
    """A deployed SuperNode: ``--node-config "coop-eval-url='...' coop-eval-token-file='...'"``."""
    url = str(context.node_config["coop-eval-url"])
    token = Path(str(context.node_config["coop-eval-token-file"])).read_text(encoding="ascii").strip()
    return LocalEndpoint(url=url.rstrip("/"), token=token)


class EvalSource(Protocol):
    """What a ClientApp can reach: its co-op node's identity and its answers (never records)."""

    def identity(self) -> str: ...

    def answer(self, request: bytes, artifact: bytes) -> bytes: ...


def make_client_app(endpoint_of: Callable[[Context], EvalSource]) -> ClientApp:
    app = ClientApp()

    @app.query("coop_identify")
    def identify(message: Message, context: Context) -> Message:
        node_id = endpoint_of(context).identity()
        return Message(RecordDict({"identity": ConfigRecord({"node_id": node_id})}), reply_to=message)

    @app.query("coop_eval")
    def evaluate(message: Message, context: Context) -> Message:
        record = message.content.config_records["eval"]
        request = record["request"]
        artifact = record["artifact"]
        if not isinstance(request, bytes) or not isinstance(artifact, bytes):
            raise TypeError("an evaluation message carries the request and the model as bytes")
        answer = endpoint_of(context).answer(request, artifact)
        return Message(RecordDict({"answer": ConfigRecord({"answer": answer})}), reply_to=message)

    return app


class EvalJob(msgspec.Struct, frozen=True):
    """Everything the ServerApp needs: the signed request, the model, the key that signs the report."""

    request: bytes
    artifact: bytes
    signer_seed: bytes
    timeout: float = 120.0
    wait_for_nodes: int = 0  # wait (bounded by timeout) until this many SuperNodes are connected


def _nodes(grid: Grid, job: EvalJob) -> list[int]:
    deadline = time.monotonic() + job.timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= job.wait_for_nodes or time.monotonic() > deadline:
            return nodes
        time.sleep(1.0)


def _reply_value(reply: Message, record: str, key: str) -> bytes | str | None:
    if reply.has_error():
        return None
    records = reply.content.config_records
    if record not in records:
        return None
    value = records[record].get(key)
    return value if isinstance(value, bytes | str) else None


def run_eval(
    grid: Grid, job: EvalJob, *, now: int, observe: Callable[[Message], None] | None = None
) -> bytes:
    """Ask the named co-ops, collect what they sign, and return the signed report.

    ``observe`` sees every reply as it arrives (tests inspect what left the nodes).
    """
    verified = open_request(job.request, now=now, artifact=job.artifact)
    request = verified.request
    nodes = _nodes(grid, job)
    asks = [
        Message(
            RecordDict({"ask": ConfigRecord({"what": "identity"})}), dst_node_id=node, message_type=IDENTIFY
        )
        for node in nodes
    ]
    names: dict[int, str] = {}
    for reply in grid.send_and_receive(asks, timeout=job.timeout):
        if observe is not None:
            observe(reply)
        value = _reply_value(reply, "identity", "node_id")
        if isinstance(value, str):
            names[reply.metadata.src_node_id] = value
    # Only the co-ops the request names, and each at most once: never "every connected node".
    targets: dict[str, int] = {}
    for flower_id, coop_id in sorted(names.items()):
        if coop_id in request.targets:
            targets.setdefault(coop_id, flower_id)
    content = ConfigRecord({"request": job.request, "artifact": job.artifact})
    messages = [
        Message(RecordDict({"eval": content}), dst_node_id=flower_id, message_type=EVALUATE)
        for flower_id in targets.values()
    ]
    answers: dict[str, NodeAnswer] = {}
    by_flower = {flower_id: coop_id for coop_id, flower_id in targets.items()}
    for reply in grid.send_and_receive(messages, timeout=job.timeout) if messages else ():
        if observe is not None:
            observe(reply)
        sender = by_flower.get(reply.metadata.src_node_id)
        value = _reply_value(reply, "answer", "answer")
        if sender is None or not isinstance(value, bytes):
            continue
        try:
            answer = _ANSWER.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            answer = NodeAnswer(
                node_id=sender, decline=Decline.BAD_ATTESTATION, detail="an unreadable answer"
            )
        if answer.node_id != sender:
            answer = NodeAnswer(
                node_id=sender, decline=Decline.BAD_ATTESTATION, detail="an answer naming another co-op"
            )
        answers[sender] = answer
    for coop_id in request.targets:
        if coop_id not in answers:
            detail = "no SuperNode serves this co-op" if coop_id not in targets else "no answer in time"
            answers[coop_id] = NodeAnswer(node_id=coop_id, decline=Decline.UNREACHABLE, detail=detail)
    evaluator = get_evaluator(request.task)
    return build_report(
        request_envelope=job.request,
        request_hash=verified.hash,
        task=request.task,
        model_sha256=request.model_sha256,
        purpose=request.purpose,
        answers=list(answers.values()),
        finalize=evaluator.finalize,
        schema=evaluator.statistic_sensitivity().keys(),
        created_at=now,
        signer=Signer(job.signer_seed),
    )


def make_server_app(job: EvalJob, deliver: Callable[[bytes], None]) -> ServerApp:
    """A ServerApp that runs ``job`` and hands the signed report to ``deliver``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        deliver(run_eval(grid, job, now=int(time.time())))

    return app


def _job_from_run_config(context: Context) -> tuple[EvalJob, Path]:
    config = context.run_config
    job = EvalJob(
        request=Path(str(config["coop-request-file"])).read_bytes(),
        artifact=Path(str(config["coop-artifact-file"])).read_bytes(),
        signer_seed=Path(str(config["coop-signer-key-file"])).read_bytes(),
        timeout=float(config.get("coop-timeout", 120.0)),
        wait_for_nodes=int(config.get("coop-wait-for-nodes", 0)),
    )
    return job, Path(str(config["coop-report-file"]))


def _deployed_server() -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        job, out = _job_from_run_config(context)
        report = run_eval(grid, job, now=int(time.time()))
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(report)
        tmp.replace(out)

    return app


# The apps a deployment names in its pyproject ([tool.flwr.app.components]).
app_client: Final = make_client_app(endpoint_from_node_config)
app_server: Final = _deployed_server()
