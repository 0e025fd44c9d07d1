"""Flower's deployment engine for real: a SuperLink (TLS, SuperNode auth) and two SuperNodes next to
two co-op nodes; a federated evaluation through it, and a hostile ClientApp that gets nothing."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from eval_cli import coop_on_terminal, in_order, warnings_in

from coop.eval import build_label_agreement_model
from coop.eval.report import REPORT_TYPE, Report
from coop.governance.envelope import open_envelope
from coop.node.collective.settings import Actor
from coop.node.runtime import Node

from factories import contribute, make_member, process
from flower_federation import ENV as FLOWER_ENV
from flower_federation import FlowerFederation
from harness import init_node
from nodeproc import NodeProcess, coop, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTILE_APP = Path(__file__).resolve().parent / "hostile_app"


def _fill(root: Path, prefix: str) -> None:
    node = Node(root)
    try:
        member, _ = make_member(node, "writer")
        for i in range(16):
            good = i % 2 == 0
            words = "thanks correct helpful" if good else "wrong error broken"
            contribute(
                node,
                member,
                text=f"User: {prefix} secret question {i}?\nAssistant: {words} {i}",
                label="good" if good else "fail",
            )
        process(node)
        node.change_settings({"eval_policy.min_records": 5}, actor=Actor("ada", admin=True))
    finally:
        node.close()


@pytest.fixture(scope="module")
def deployed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[Path], list[NodeProcess], FlowerFederation]]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("the SuperNodes' isolation from the data (a mount namespace) needs root and unshare")
    base = tmp_path_factory.mktemp("deploy")
    roots, nodes = [], []
    for i in range(2):
        root = init_node(base / f"node{i}")
        _fill(root, f"n{i}")
        roots.append(root)
        nodes.append(NodeProcess(root, port=free_port()).start())
    # The SuperNodes' folders must be reachable by their user; the nodes' data directories are not.
    workdir = Path(tempfile.mkdtemp(prefix="coop-flower-", dir="/tmp"))
    federation = FlowerFederation(
        workdir,
        [(node.url, root / "keys" / "eval.token") for node, root in zip(nodes, roots, strict=True)],
        hide=roots,
        isolation="namespace",
    )
    try:
        federation.start()
        yield roots, nodes, federation
    finally:
        federation.stop()
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _builder(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "builder.key"
    coop("eval", "keygen", str(key))
    rng = random.Random(3)
    training = [
        (f"thanks correct {rng.random()}", True) if i % 2 else (f"wrong error {rng.random()}", False)
        for i in range(60)
    ]
    model = tmp_path / "model.npz"
    model.write_bytes(build_label_agreement_model(training, dim=1024))
    return key, model


def _request_args(
    key: Path, model: Path, out: Path, federation: FlowerFederation, shared: Path, targets: list[str]
) -> list[str]:
    args = ["eval", "request", "--key", str(key), "--task", "label-agreement", "--model", str(model)]
    args += ["--purpose", "deployment check", "--out", str(out), "--timeout", "90"]
    args += ["--superlink", federation.address, "--root-certificates", str(federation.ca)]
    args += ["--shared-dir", str(shared)]
    for node_id in targets:
        args += ["--target", node_id]
    return args


def test_deployment_engine_runs_a_federated_eval_over_tls_with_supernode_auth(
    deployed: tuple[list[Path], list[NodeProcess], FlowerFederation], tmp_path: Path
) -> None:
    roots, _, federation = deployed
    key, model = _builder(tmp_path)
    ids = [json.loads(coop("identity", "show", str(r), "--json").stdout)["node_id"] for r in roots]
    shared = Path(tempfile.mkdtemp(prefix="coop-eval-", dir="/tmp"))
    try:
        out = tmp_path / "report.json"
        started = time.monotonic()
        run = coop_on_terminal(*_request_args(key, model, out, federation, shared, ids))
        print(f"coop eval request (deployment, one round): {time.monotonic() - started:.1f} s")
        assert run.returncode == 0, run.terminal
        verdict = json.loads(coop("eval", "verify", str(out), "--json").stdout)
        assert verdict["ok"] is True
        report = (tmp_path / "report.md").read_text()
        assert "| yes | 16 |" in report
        assert report.count("| yes |") == 2
        # One round: one push to the SuperNodes (test_eval_one_round checks one message each, of
        # one type); the run's files (progress.jsonl among them) are gone, the folder stays.
        assert run.terminal.count("sent to 2 SuperNodes") == 1
        assert sorted(p.name for p in shared.iterdir()) == []
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    # The builder saw each step as it happened, in order, and no warning at all.
    assert in_order(
        run.terminal,
        [
            "request signed (",
            "sent to 2 SuperNodes",
            "co-ops answering 1/2",
            "co-ops answering 2/2",
            "report verified",
        ],
    ), run.terminal
    assert warnings_in(run.stdout, run.terminal) == []


def test_a_supernode_whose_coop_is_not_named_never_calls_its_node(
    deployed: tuple[list[Path], list[NodeProcess], FlowerFederation], tmp_path: Path
) -> None:
    roots, _, federation = deployed
    key, model = _builder(tmp_path)
    ids = [json.loads(coop("identity", "show", str(r), "--json").stdout)["node_id"] for r in roots]
    shared = Path(tempfile.mkdtemp(prefix="coop-eval-", dir="/tmp"))
    try:
        out = tmp_path / "report.json"
        run = coop_on_terminal(*_request_args(key, model, out, federation, shared, ids[:1]))
        assert run.returncode == 0, run.terminal
        assert list(shared.iterdir()) == []  # the run's files went with it
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert in_order(run.terminal, ["sent to 2 SuperNodes", "co-ops answering 1/1", "report verified"])
    assert run.terminal.count("sent to 2 SuperNodes") == 1
    _, payload = open_envelope(out.read_bytes(), payload_type=REPORT_TYPE, max_bytes=1 << 26)
    request_hash = msgspec.json.decode(payload, type=Report).request_hash
    seen = [
        [item["hash"] for item in json.loads(coop("eval", "requests", str(root), "--json").stdout)]
        for root in roots
    ]
    assert request_hash in seen[0]
    assert request_hash not in seen[1]  # its SuperNode declined locally: the model never reached it


def test_hostile_client_app_reads_no_data_and_gets_no_record_text(
    deployed: tuple[list[Path], list[NodeProcess], FlowerFederation],
) -> None:
    roots, _, federation = deployed
    shared = Path(tempfile.mkdtemp(prefix="coop-hostile-", dir="/tmp"))
    shared.chmod(0o755)
    out = shared / "found.json"
    env = {**FLOWER_ENV, "FLWR_HOME": str(federation.home)}
    flwr = str(Path(sys.executable).with_name("flwr"))
    config = f"target-dirs='{','.join(str(r) for r in roots)}' report-file='{out}'"
    try:
        started = subprocess.run(
            [flwr, "run", str(HOSTILE_APP), "coop", "--run-config", config],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stdout + started.stderr
        deadline = time.monotonic() + 240
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(1)
        assert out.exists(), "the hostile run never finished"
        found = json.loads(out.read_text())
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert len(found) == 2
    text = json.dumps(found)
    for attempts in found:
        for path, result in attempts.items():
            if path.startswith("/"):
                # Not there to read: missing, refused, or an empty cover where the data lives.
                assert result.startswith("denied") or result == "listed: ", f"{path}: {result}"
        assert attempts["member API"].startswith("401")
        assert attempts["admin API"].startswith("401")
        assert attempts["eval with no request"].startswith(("200", "400", "422"))
    # Nothing any member wrote came back.
    assert "secret question" not in text
    assert "thanks correct helpful" not in text
