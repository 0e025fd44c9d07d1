"""``coop joint``: propose, list, show, sign and end joint actions from the data directory (issue 15).

In-process through :func:`coop.node.cli.main`, as the local admin: text or ``--json`` out, and
every refusal one line on stderr (a JSON object with ``--json``) with the exit-code table's code.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from coop.node.cli import main
from coop.node.cli.exits import Exit
from coop.node.collective.settings import Actor
from coop.node.runtime import Node

from factories import make_node


def _day(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


@pytest.fixture
def node_root(tmp_path: Path) -> tuple[Path, str]:
    node = make_node(tmp_path)
    try:
        return node.data.root, node.identity.node_id
    finally:
        node.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _propose(root: Path, own: str, *extra: str) -> list[str]:
    return [
        "joint",
        "propose",
        str(root),
        "--reason",
        "hold back one tag",
        "--until",
        _day(30),
        "--threshold",
        "1",
        "--coop",
        own,
        *extra,
    ]


def test_joint_cli_propose_list_show_end(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str]
) -> None:
    root, own = node_root
    code, out, err = _run(capsys, *_propose(root, own, "--embargo", "--tag", "pay", "--json"))
    assert code == 0, err
    taken = json.loads(out)
    action = taken["action"]
    assert taken["proposal"] is None and action["status"] == "active" and action["tags"] == ["pay"]
    assert action["bound_here"] is True

    code, out, err = _run(capsys, "joint", "list", str(root))
    assert code == 0, err
    assert action["id"][:16] in out and "active" in out and "embargo on tag pay" in out
    assert "records already released stay released" in out
    code, out, _ = _run(capsys, "joint", "list", str(root), "--json")
    assert [a["id"] for a in json.loads(out)["actions"]] == [action["id"]]

    code, out, err = _run(capsys, "joint", "show", str(root), action["id"][:10])
    assert code == 0, err
    assert f"joint action {action['id']}" in out
    assert "signed by" in out and "(admin)" in out
    assert "here: bound: this co-op signed" in out
    code, out, _ = _run(capsys, "joint", "show", str(root), action["id"], "--json")
    assert json.loads(out)["signers"][0]["coop"] == own

    code, out, err = _run(capsys, "joint", "end", str(root), action["id"])
    assert code == 0, err
    assert out.startswith(f"signed the end of {action['id']}: ended")
    node = Node(root)
    try:
        (view,) = node.federation.joint.list()
        assert view.status.value == "ended"
    finally:
        node.close()


def test_joint_cli_sign_twice_and_unknown_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str]
) -> None:
    root, own = node_root
    code, out, err = _run(capsys, *_propose(root, own, "--freeze", "--json"))
    assert code == 0, err
    action = json.loads(out)["action"]["id"]
    code, out, err = _run(capsys, "joint", "sign", str(root), action)
    assert code == Exit.NOT_FOUND and out == ""
    assert err.startswith("coop: error: ") and err.count("\n") == 1 and "already signed" in err
    code, out, err = _run(capsys, "joint", "sign", str(root), "0" * 64, "--json")
    assert code == Exit.NOT_FOUND
    problem = json.loads(err)
    assert problem["kind"] == "not-found" and problem["field"] == "action"
    code, _, err = _run(capsys, "joint", "show", str(root), "feedface")
    assert code == Exit.NOT_FOUND and err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ((), "--freeze"),  # no kind
        (("--freeze", "--volume-cap", "10"), "--freeze"),  # two kinds
        (("--freeze", "--embargo"), "--freeze"),  # two kinds, both plain flags
        (("--embargo", "--language", "!!"), "--language"),
        (("--freeze", "--tag", "pay"), "--tag"),  # a selector on a freeze
        (("--embargo", "--license", "GPL-3.0"), "--license"),
    ],
)
def test_joint_cli_refuses_a_wrong_proposal_in_one_line(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str], extra: tuple[str, ...], field: str
) -> None:
    root, own = node_root
    code, out, err = _run(capsys, *_propose(root, own, *extra), "--json")
    assert code == Exit.USAGE and out == ""
    problem = json.loads(err)
    assert problem["field"] == field, problem
    code, out, _ = _run(capsys, "joint", "list", str(root), "--json")
    assert json.loads(out)["actions"] == []


def test_joint_cli_refuses_a_bad_date_and_a_missing_end(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str]
) -> None:
    root, own = node_root
    args = _propose(root, own, "--freeze")
    args[args.index("--until") + 1] = "the end of the strike"
    code, _, err = _run(capsys, *args)
    assert code == Exit.USAGE and err.count("\n") == 1 and "[--until]" in err
    args = [a for a in _propose(root, own, "--freeze") if a not in ("--until", _day(30))]
    code, _, err = _run(capsys, *args)
    assert code == Exit.USAGE and "--until DATE or --review DATE" in err
    code, _, err = _run(capsys, *_propose(root, own, "--freeze", "--threshold", "5"))
    assert code == Exit.USAGE and "--threshold" in err


def test_joint_cli_a_preference_shift_opens_a_vote(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str]
) -> None:
    root, own = node_root
    extra = ("--preference", "train-ai=n", "--condition", "the licence talks end")
    code, out, err = _run(capsys, *_propose(root, own, *extra))
    assert code == 0, err
    assert re.fullmatch(
        r"proposed [0-9a-f]{64}; put to the members' vote: proposal 1 \(closes \d{4}-\d\d-\d\d [^)]+\)\n", out
    ), out
    code, out, _ = _run(capsys, "joint", "list", str(root))
    assert "pending" in out and "not bound: this co-op did not sign; members' vote open: proposal 1" in out


def test_joint_cli_two_kinds_and_an_unknown_licence_are_refused_in_words(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str]
) -> None:
    root, own = node_root
    code, out, err = _run(capsys, *_propose(root, own, "--freeze", "--embargo"))
    assert code == Exit.USAGE and out == "" and err.count("\n") == 1
    assert "choose one of --freeze, --embargo, --eval-only, --preference AI_USE, --volume-cap N" in err
    code, out, err = _run(capsys, *_propose(root, own, "--embargo", "--license", "MIT"))
    assert code == Exit.USAGE and out == "" and err.count("\n") == 1
    assert "MIT is not a licence this node knows: one of CC0-1.0, CC-BY-4.0" in err
    assert "enum" not in err
    code, out, _ = _run(capsys, "joint", "list", str(root), "--json")
    assert json.loads(out)["actions"] == []


def _from_beta(root: Path, tmp_path: Path, **action: Any) -> str:
    """Beta (pinned here) proposes ``action`` to 2 of {this co-op, Beta}; this node takes it as
    gossip would bring it."""
    beta = make_node(tmp_path / "beta", name="Beta")
    alpha = Node(root)
    try:
        here = alpha.identity.node_id
        alpha.federation.add_peer("http://127.0.0.1:9", beta.identity.node_id, name="Beta", actor="test")
        beta.federation.add_peer("http://127.0.0.1:9/a", here, name=None, actor="test")  # Beta knows us
        view, _ = beta.federation.joint.propose(
            reason="both co-ops act together",
            threshold=2,
            coops=[here],
            ends_at=beta.now() + 86_400 * 30,
            actor=Actor("bea", admin=True),
            **action,
        )
        receipt = alpha.federation.book.joint.receive(
            beta.federation.joint_store.actions(), beta.federation.joint_store.statements()
        )
        assert receipt.refused == (), receipt
        return view.id
    finally:
        alpha.close()
        beta.close()


def test_joint_cli_sign_by_a_vote_says_so_and_the_vote_shows(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str], tmp_path: Path
) -> None:
    root, _ = node_root
    action = _from_beta(root, tmp_path, kind="preference", ai_use="train-ai=n")
    code, out, err = _run(capsys, "joint", "sign", str(root), action)
    assert code == 0, err
    assert out.startswith("put to the members' vote: proposal 1 (closes ") and "signed" not in out
    code, out, _ = _run(capsys, "joint", "show", str(root), action)
    assert "here: not bound: this co-op did not sign; members' vote open: proposal 1" in out


def test_joint_cli_end_says_how_many_more_ends_it_needs(
    capsys: pytest.CaptureFixture[str], node_root: tuple[Path, str], tmp_path: Path
) -> None:
    root, _ = node_root
    action = _from_beta(root, tmp_path, kind="embargo")
    code, out, err = _run(capsys, "joint", "sign", str(root), action)
    assert code == 0, err
    assert out.startswith(f"signed {action}: active; bound")
    code, out, err = _run(capsys, "joint", "end", str(root), action)
    assert code == 0, err
    assert out == (
        f"signed the end of {action}: 1 of 2 ends signed; it ends once 1 more signer signs its end\n"
    )
