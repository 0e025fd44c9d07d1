"""Three co-op nodes as three hosts: each in its own Linux network namespace with its own address.

They federate by gossip over a bridge; one host's cable is pulled and plugged back in; then a
model builder runs a federated evaluation across the three through a SuperLink on the bridge.
Every host serves on the same port of its own address, so nothing but the address tells them apart.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from coop.eval import build_label_agreement_model
from coop.node.collective.settings import Actor
from coop.node.runtime import Node

from factories import contribute, make_member, process
from flower_federation import BIN, make_supernode_keys
from flower_federation import ENV as FLOWER_ENV
from harness import add_member, bearer, chat_text, code_word, init_node
from netns import Lab, NsClient, NsProcess, lab, superlink_certificates, unavailable, wait_until
from nodeproc import ENV, coop

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = ("a", "b", "c")
COOPS = {"a": "Alder Co-op", "b": "Birch Co-op", "c": "Cedar Co-op"}
NODE_PORT = 8000  # the same on every host: each has its own address
FORWARD_PORT = 8001  # on each host's loopback, to its node (the local eval interface is loopback only)
SUPERLINK_PORT = 9093  # at the hub
RECORDS = 16  # each co-op's own node-scope records, for the evaluation
NETNS_SCRIPT = str(Path(__file__).resolve().with_name("netns.py"))
# Children must find Flower's entry points (the SuperLink starts `flower-superexec` by name).
CHILD_ENV = {
    **ENV,
    "PATH": FLOWER_ENV["PATH"],
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
}


@dataclass
class Hosts:
    """The lab, a node per host, a client on each host (to its own node) and the test at the hub."""

    lab: Lab
    roots: dict[str, Path]
    ids: dict[str, str]
    nodes: dict[str, NsProcess]
    local: dict[str, NsClient]
    admin: NsClient  # at the hub: a's admin, over the bridge

    def url(self, name: str) -> str:
        return f"http://{self.lab.hosts[name].address}:{NODE_PORT}"

    def share(self, scope: str) -> str:
        body = {"label": "good", "consent": True, "content": chat_text(code_word()), "scope": scope}
        response = self.admin.post(f"{self.url('a')}/api/v1/contributions", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["uid"])

    def process_and_release(self) -> str:
        assert self.admin.post(f"{self.url('a')}/api/v1/admin/process").status_code == 200
        response = self.admin.post(f"{self.url('a')}/api/v1/admin/releases")
        assert response.status_code == 201, response.text
        return str(response.json()["name"])

    def heads(self, name: str) -> dict[str, tuple[int, str]]:
        """What ``name`` holds as every origin's latest manifest, asked on its own host."""
        rows = self.local[name].get(f"{self.url(name)}/api/v1/federation/origins").json()
        return {row["origin"]: (row["seq"], row["hash"]) for row in rows}

    def mirrored(self, name: str, origin: str) -> set[str]:
        """Every record of ``origin`` that ``name`` holds (its database: the public route lists public ones)."""
        with contextlib.closing(
            sqlite3.connect(f"file:{self.roots[name] / 'coop.sqlite3'}?mode=ro", uri=True)
        ) as conn:
            rows = conn.execute("SELECT uid FROM mirror_records WHERE origin = ?", (origin,)).fetchall()
        return {str(uid) for (uid,) in rows}

    def same_heads(self) -> bool:
        views = [self.heads(name) for name in NAMES]
        return all(len(v) == len(NAMES) for v in views) and views[0] == views[1] == views[2]


def _fill(root: Path, prefix: str) -> None:
    """Records that never leave the node (scope node), for the evaluation only; a low eval minimum."""
    node = Node(root)
    try:
        member, _ = make_member(node, "writer")
        for i in range(RECORDS):
            good = i % 2 == 0
            words = "thanks correct helpful" if good else "wrong error broken"
            contribute(
                node,
                member,
                text=f"User: {prefix} secret question {i}?\nAssistant: {words} {i}",
                label="good" if good else "fail",
                scope="node",
            )
        process(node)
        node.change_settings({"eval_policy.min_records": 5}, actor=Actor("ada", admin=True))
        assert node.evaluation.token_path.exists()  # made on first use: the SuperNode gets a copy
    finally:
        node.close()


def _serving(hosts: Hosts, name: str) -> bool:
    if not hosts.nodes[name].running():
        raise RuntimeError(f"node {name} exited:\n{hosts.nodes[name].log()}")
    return hosts.local[name].get(f"{hosts.url(name)}/healthz").status_code == 200


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"cannot build the network namespaces this test runs in: {reason}")
    base = tmp_path_factory.mktemp("netns")
    with contextlib.ExitStack() as stack:  # undone in reverse, every step even when one fails
        made = stack.enter_context(lab(NAMES))
        roots, ids = {}, {}
        for name in NAMES:
            address = made.hosts[name].address
            root = init_node(
                base / name,
                node={"name": COOPS[name], "public_url": f"http://{address}:{NODE_PORT}"},
                federation={"interval_seconds": 0.5, "fanout": 2, "request_timeout_seconds": 2.0},
                pipeline={"interval_seconds": 0.5},
                rate_limit={"per_token_burst": 10_000, "per_ip_burst": 10_000},
            )
            _fill(root, name)
            roots[name] = root
            ids[name] = json.loads(coop("identity", "show", str(root), "--json").stdout)["node_id"]
        for name in NAMES:
            for other in NAMES:
                if other != name:
                    url = f"http://{made.hosts[other].address}:{NODE_PORT}"
                    coop("peers", "add", str(roots[name]), url, "--key", ids[other])
        token = add_member(roots["a"], "ada", admin=True)
        nodes = {}
        for name in NAMES:
            host = made.hosts[name]
            serve = [sys.executable, "-m", "coop.node.cli", "serve", str(roots[name])]
            serve += ["--host", host.address, "--port", str(NODE_PORT)]
            nodes[name] = NsProcess(made, host.namespace, serve, base / f"{name}-serve.log", env=CHILD_ENV)
            stack.callback(nodes[name].stop)
            nodes[name].start()
        local = {}
        for name in NAMES:
            local[name] = NsClient(made.hosts[name].namespace)
            stack.callback(local[name].close)
        admin = NsClient(made.hub, headers=bearer(token), timeout=30)
        stack.callback(admin.close)
        found = Hosts(made, roots, ids, nodes, local, admin)
        for name in NAMES:
            wait_until(lambda n=name: _serving(found, n), f"{name} serving", within=60)
        yield found


def test_hosts_converge_by_gossip_and_a_cut_off_host_catches_up_once_healed(hosts: Hosts) -> None:
    a = hosts.ids["a"]
    public = hosts.share("public")
    federation = hosts.share("federation")
    hosts.share("node")
    hosts.process_and_release()
    wait_until(hosts.same_heads, "converged on every origin's head", within=60)
    for name in ("b", "c"):
        wait_until(
            lambda n=name: hosts.mirrored(n, a) == {public, federation},
            f"{name} mirrored a's records",
            within=60,
        )
    old = hosts.heads("c")[a]

    hosts.lab.cut("c")
    try:
        c = hosts.lab.hosts["c"]
        assert not hosts.local["a"].connectable(c.address, NODE_PORT), "c is still reachable from a"
        assert not hosts.local["c"].connectable(hosts.lab.hosts["a"].address, NODE_PORT)
        later = hosts.share("public")
        hosts.process_and_release()
        # a issues the manifest of its release at its next gossip round.
        wait_until(lambda: hosts.heads("a")[a] != old, "a issued a new manifest", within=30)
        new = hosts.heads("a")[a]
        wait_until(lambda: hosts.heads("b")[a] == new, "b saw a's new release", within=60)
        wait_until(lambda: later in hosts.mirrored("b", a), "b mirrored the new record", within=60)
        time.sleep(3)  # several gossip rounds (0.5 s apart) in which c could have heard, had it a link
        assert hosts.heads("c")[a] == old
        assert later not in hosts.mirrored("c", a)
    finally:
        hosts.lab.heal("c")

    wait_until(hosts.same_heads, "converged again once c's link was back", within=90)
    assert hosts.heads("c")[a] == new
    wait_until(lambda: later in hosts.mirrored("c", a), "c mirrored the record it missed", within=60)
    assert hosts.mirrored("c", a) == {public, federation, later}


@dataclass
class Flower:
    address: str
    ca: Path


@pytest.fixture
def flower(hosts: Hosts, tmp_path: Path) -> Iterator[Flower]:
    """A SuperLink at the hub (TLS, SuperNode auth) and a SuperNode on each host that cannot read
    any node's data directory (a mount namespace covers them, as flower_federation does)."""
    made = hosts.lab
    workdir = tmp_path / "flower"
    workdir.mkdir()
    ca, cert, key = superlink_certificates(workdir / "tls", [made.hub_address])
    address = f"{made.hub_address}:{SUPERLINK_PORT}"
    home = workdir / "flwr-home"
    home.mkdir()
    connection = {"address": address, "root-certificates": str(ca)}
    (home / "config.toml").write_text(tomli_w.dumps({"superlink": {"default": "coop", "coop": connection}}))
    env = {**CHILD_ENV, "FLWR_HOME": str(home)}
    at_hub = NsClient(made.hub)
    with contextlib.ExitStack() as stack:
        stack.callback(at_hub.close)
        superlink = NsProcess(
            made,
            made.hub,
            [
                str(BIN / "flower-superlink"),
                "--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
                "--host", made.hub_address, "--port", str(SUPERLINK_PORT),
                "--database", str(workdir / "superlink.db"),
            ],
            workdir / "superlink.log",
            env=env,
        )  # fmt: skip
        stack.callback(superlink.stop)
        superlink.start(cwd=workdir)
        wait_until(
            lambda: superlink.running() and at_hub.connectable(made.hub_address, SUPERLINK_PORT),
            "the SuperLink listening",
            within=60,
        )
        covers = [
            f"mount -t tmpfs -o ro,size=4k,mode=0500 none '{root.resolve()}'" for root in hosts.roots.values()
        ]
        hide = "set -e; " + "; ".join([*covers, 'exec "$@"'])
        for name in NAMES:
            host = made.hosts[name]
            folder = workdir / f"supernode-{name}"
            folder.mkdir()
            private, public = make_supernode_keys(folder)
            made.run(
                made.hub,
                [str(BIN / "flwr"), "supernode", "register", str(public), "coop"],
                env=env,
                timeout=60,
            )
            token = folder / "eval.token"
            token.write_bytes((hosts.roots[name] / "keys" / "eval.token").read_bytes())
            token.chmod(0o400)
            forward = [
                sys.executable,
                NETNS_SCRIPT,
                "forward",
                str(FORWARD_PORT),
                host.address,
                str(NODE_PORT),
            ]
            forwarder = NsProcess(
                made, host.namespace, forward, workdir / f"forward-{name}.log", env=CHILD_ENV
            )
            stack.callback(forwarder.stop)
            forwarder.start()
            wait_until(
                lambda n=name: hosts.local[n].connectable("127.0.0.1", FORWARD_PORT),
                f"the forwarder on {name}",
                within=30,
            )
            supernode_argv = [
                str(BIN / "flower-supernode"),
                "--superlink", address,
                "--root-certificates", str(ca),
                "--auth-supernode-private-key", str(private),
                "--node-config", f"coop-eval-url='http://127.0.0.1:{FORWARD_PORT}' coop-eval-token-file='{token}'",
            ]  # fmt: skip
            node_home = folder / "home"
            node_home.mkdir()
            supernode = NsProcess(
                made,
                host.namespace,
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "sh",
                    "-c",
                    hide,
                    "sh",
                    *supernode_argv,
                ],
                folder / "supernode.log",
                env={**env, "HOME": str(node_home), "FLWR_HOME": str(node_home)},
            )
            stack.callback(supernode.stop)
            supernode.start(cwd=folder)
        yield Flower(address, ca)


def test_federated_eval_across_the_hosts_through_a_superlink(
    hosts: Hosts, flower: Flower, tmp_path: Path
) -> None:
    key = tmp_path / "builder.key"
    coop("eval", "keygen", str(key))
    rng = random.Random(3)
    training = [
        (f"thanks correct {rng.random()}", True) if i % 2 else (f"wrong error {rng.random()}", False)
        for i in range(60)
    ]
    model = tmp_path / "model.npz"
    model.write_bytes(build_label_agreement_model(training, dim=1024))
    out = tmp_path / "report.json"
    shared = tmp_path / "shared"
    args: list[Any] = [sys.executable, "-m", "coop.node.cli", "eval", "request", "--key", key]
    args += ["--task", "label-agreement", "--model", model, "--purpose", "netns check"]
    args += ["--out", out, "--timeout", "90", "--superlink", flower.address]
    args += ["--root-certificates", flower.ca, "--shared-dir", shared]
    for name in NAMES:
        args += ["--target", hosts.ids[name]]
    # The model builder stands at the hub, where the SuperLink is.
    hosts.lab.run(hosts.lab.hub, [str(arg) for arg in args], env=CHILD_ENV, timeout=420)
    verdict = json.loads(coop("eval", "verify", str(out), "--json").stdout)
    assert verdict["ok"] is True, verdict
    report = (tmp_path / "report.md").read_text()
    assert report.count("| yes |") == len(NAMES), report
    for name in NAMES:
        assert f"| {COOPS[name]} | yes |" in report, report
    for name in ("b", "c"):  # a also holds what the gossip test shared
        assert f"| {COOPS[name]} | yes | {RECORDS} |" in report, report
