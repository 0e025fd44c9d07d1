"""Peering and evaluation run on what they are given (a store, a clock, a signer, settings), not a Node,
and keep their SQL in their store-facing modules."""

from __future__ import annotations

import ast
import secrets
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from coop.eval import Decline, Filters, build_request
from coop.federation.manifest import PAYLOAD_TYPE, Manifest
from coop.governance import Signer
from coop.governance.envelope import open_envelope
from coop.node.collective.settings import current_settings
from coop.node.evaluation.service import Evaluation
from coop.node.peering.service import FederationService
from coop.node.storage.datadir import DataDir
from coop.node.storage.store import Store

from factories import make_node

SRC = Path(__file__).resolve().parents[2] / "src" / "coop" / "node"
# Far from the wall clock: anything that read time.time() instead of the clock given would show.
LATER = 2_000_000_000


class Parts:
    """What the node hands its services, without the node."""

    def __init__(self, root: Path) -> None:
        self.data = DataDir.open(root)
        self.store = Store(self.data.db_path)
        self.signer = Signer(bytes(self.data.signing_key()))
        self.reloads = 0

    def reload(self) -> None:
        self.reloads += 1
        self.signer = Signer(bytes(self.data.signing_key()))

    def federation(self) -> FederationService:
        config = self.data.config()
        return FederationService(
            self.store,
            self.data,
            node_id=self.data.identity().node_id,
            node=config.node,
            config=config.federation,
            clock=lambda: LATER,
            signer=lambda: self.signer,
            settings=lambda: self.store.read(current_settings),
            reload_identity=self.reload,
        )


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    node = make_node(tmp_path, name="Layout Co-op")
    root = node.data.root
    node.close()
    made = Parts(root)
    try:
        yield made
    finally:
        made.store.close()


def _manifest(envelope: bytes) -> Manifest:
    _, payload = open_envelope(envelope, payload_type=PAYLOAD_TYPE, max_bytes=1 << 20)
    return msgspec.json.decode(payload, type=Manifest)


def test_federation_issues_on_the_clock_and_key_it_is_given(parts: Parts) -> None:
    service = parts.federation()
    report = service.issue(force=True)
    assert report is not None
    own = parts.data.identity().node_id
    (envelope,) = service.store.envelopes(own, [report.hash])
    manifest = _manifest(envelope)
    assert manifest.issued_at == LATER
    assert manifest.key == parts.signer.public_key.hex()
    assert manifest.coop == "Layout Co-op"


def test_a_rotation_calls_back_and_the_next_manifest_uses_the_new_key(parts: Parts) -> None:
    service = parts.federation()
    old = parts.signer.public_key
    service.rotate_key(actor="local-admin")
    assert parts.reloads == 1 and parts.signer.public_key != old
    report = service.issue(force=True)
    assert report is not None
    (envelope,) = service.store.envelopes(parts.data.identity().node_id, [report.hash])
    assert _manifest(envelope).key == parts.signer.public_key.hex()


def test_evaluation_answers_on_the_clock_and_identity_it_is_given(parts: Parts) -> None:
    node_id = parts.data.identity().node_id
    evaluation = Evaluation(
        parts.store,
        token_path=parts.data.root / "keys" / "eval.token",
        node_id=node_id,
        coop="Named Here",
        clock=lambda: LATER,
        signer=lambda: parts.signer,
        settings=lambda: parts.store.read(current_settings).settings,
    )
    request = build_request(
        signer=Signer(bytes(range(32))),
        task="label-agreement",
        model_name="m.npz",
        artifact=b"not read: the request is declined first",
        targets=["ab" * 32],  # another co-op
        purpose="test",
        filters=Filters(),
        now=LATER,  # valid only on the clock given
        lifetime=3600,
        nonce=secrets.token_hex(8),
    )
    answer = evaluation.answer(request, b"not read: the request is declined first")
    assert answer.decline is Decline.NOT_TARGETED
    assert answer.node_id == node_id and answer.coop == "Named Here"
    assert [r.received_at for r in evaluation.requests()] == [LATER]


# Modules of peering/ and evaluation/ that talk to the database only through the store-facing ones.
_NO_SQL = [
    "peering/service.py",
    "peering/issuance.py",
    "peering/rounds.py",
    "peering/serving.py",
    "peering/origins.py",
    "evaluation/service.py",
    "evaluation/requester.py",
]
_SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ")


@pytest.mark.parametrize("name", _NO_SQL)
def test_no_sql_outside_the_store_facing_modules(name: str) -> None:
    tree = ast.parse((SRC / name).read_text(encoding="utf-8"))
    found = [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Attribute) and node.attr in {"execute", "executemany"})
        or (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(_SQL_WORDS)
        )
    ]
    assert not found, f"{name} holds SQL at lines {found}"


def test_peering_and_evaluation_take_no_node() -> None:
    for path in [*(SRC / "peering").glob("*.py"), *(SRC / "evaluation").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        assert "coop.node.runtime" not in text, f"{path.name} reaches for the whole Node"
