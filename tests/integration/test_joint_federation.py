"""Three real co-ops; two of them join a 2-of-3 joint embargo on a tag.

While it is in force, the two co-ops' new records with that tag reach no peer and no
federated release, their untagged records still flow, and the third co-op (which did not
sign) keeps releasing tagged records as before; when the two sign its end, the held records
flow again.  Forged, under-signed and expired documents are refused at the node's own API.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from coop.federation.httpsig import sign_request
from coop.federation.joint import (
    JointAction,
    JointDigest,
    JointMessage,
    JointStatement,
    make_action,
    make_statement,
)
from coop.governance import JointKind, JointSelector, Signer
from coop.node.storage.datadir import DataDir
from fleet import Fleet, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 3
TAG = "strike"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path, N, seed=secrets.randbits(32), extra=0, interval=0.5, fanout=2, name="joint")
    try:
        fleet.init(admins=range(N))
        fleet.start()
        yield fleet
    finally:
        fleet.close()


def _client(fleet: Fleet, i: int) -> httpx.Client:
    return httpx.Client(
        base_url=fleet.nodes[i].url, headers={"Authorization": f"Bearer {fleet.tokens[i]}"}, timeout=60
    )


def _share(fleet: Fleet, i: int, *, tagged: bool) -> str:
    """A public record shared and processed on node ``i`` (not yet released); its uid."""
    word = secrets.token_hex(5)
    content = (
        f"User: Please remember the code word {word} for the picket.\n\n"
        f"Assistant: Noted: the code word is {word}. I will use it when you ask."
    )
    body: dict[str, Any] = {"label": "good", "consent": True, "content": content, "scope": "public"}
    if tagged:
        body["tags"] = [TAG]
    with _client(fleet, i) as client:
        response = client.post("/api/v1/contributions", json=body)
        assert response.status_code == 201, response.text
        uid = str(response.json()["uid"])
        assert client.post("/api/v1/admin/process").status_code == 200
    wait_until(lambda: fleet._accepted(i, uid), f"node {i} accepted {uid}", within=60)
    return uid


def _cut(fleet: Fleet, i: int) -> dict[str, Any]:
    with _client(fleet, i) as client:
        response = client.post("/api/v1/admin/releases")
    assert response.status_code == 201, response.text
    return dict(response.json())


def _released(fleet: Fleet, i: int, uid: str) -> bool:
    row = fleet._read(i, "SELECT state FROM contributions WHERE uid = ?", (uid,))
    return row is not None and row[0] == "released"


def _action(fleet: Fleet, i: int, action: str) -> dict[str, Any] | None:
    response = httpx.get(f"{fleet.nodes[i].url}/api/v1/federation/actions/{action}", timeout=30)
    return dict(response.json()) if response.status_code == 200 else None


def _status(fleet: Fleet, i: int, action: str) -> str | None:
    view = _action(fleet, i, action)
    return None if view is None else str(view["status"])


def _federated_uids(fleet: Fleet, i: int) -> set[str]:
    """The uids in node ``i``'s newest federated release (cut now, through the CLI)."""
    fleet.coop("release", str(fleet.roots[i]), "--federated")
    folder = fleet.roots[i] / "releases" / "federated"
    newest = max((p for p in folder.iterdir() if p.is_dir()), key=lambda p: int(p.name.lstrip("v")))
    uids: set[str] = set()
    for path in newest.rglob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            uids.add(json.loads(line)["uid"])
    return uids


def test_two_of_three_joint_embargo_holds_their_new_records_and_ends(fleet: Fleet) -> None:
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).date().isoformat()
    body = {
        "kind": "embargo",
        "tags": [TAG],
        "reason": "No training on picket-line chats until the contract talks end.",
        "threshold": 2,
        "coops": fleet.ids,
        "ends_at": until,
    }
    with _client(fleet, 0) as client:
        proposed = client.post("/api/v1/federation/actions", json=body)
    assert proposed.status_code == 201, proposed.text
    action = proposed.json()["action"]["id"]
    # One signature of the two needed: proposed and signed by co-op 0, binding no one yet.
    first = _action(fleet, 0, action)
    assert first is not None and first["status"] == "pending" and not first["bound_here"]

    wait_until(lambda: _action(fleet, 1, action) is not None, "co-op 1 received the action", within=60)
    with _client(fleet, 1) as client:
        signed = client.post(f"/api/v1/federation/actions/{action}/sign")
    assert signed.status_code == 200, signed.text
    wait_until(
        lambda: all(_status(fleet, i, action) == "active" for i in range(N)),
        "every co-op sees the action in force",
        within=60,
    )
    views = [_action(fleet, i, action) for i in range(N)]
    assert [v is not None and v["bound_here"] for v in views] == [True, True, False]
    assert {s["coop"] for s in views[2]["signers"]} == {fleet.ids[0], fleet.ids[1]}  # type: ignore[index]

    held = {i: _share(fleet, i, tagged=True) for i in (0, 1)}
    free_tagged = _share(fleet, 2, tagged=True)  # co-op 2 did not sign: not bound
    plain = _share(fleet, 0, tagged=False)
    for i in range(N):
        _cut(fleet, i)
    assert not _released(fleet, 0, held[0]) and not _released(fleet, 1, held[1])
    assert _released(fleet, 0, plain) and _released(fleet, 2, free_tagged)
    # Co-op 2's tagged record and co-op 0's untagged one flow to every peer: once they are
    # everywhere, the held records have had every chance to flow too.
    wait_until(lambda: fleet.holders(free_tagged) == {0, 1}, "co-op 2's tagged record spread", within=90)
    wait_until(lambda: fleet.holders(plain) == {1, 2}, "co-op 0's untagged record spread", within=90)
    assert fleet.holders(held[0]) == set() and fleet.holders(held[1]) == set()
    federated = _federated_uids(fleet, 2)
    assert free_tagged in federated and plain in federated
    assert not federated & set(held.values())

    # The two signers end it; the held records are admitted by the next cuts and flow.
    for i in (0, 1):
        with _client(fleet, i) as client:
            ended = client.post(f"/api/v1/federation/actions/{action}/end")
        assert ended.status_code == 200, ended.text
    wait_until(
        lambda: all(_status(fleet, i, action) == "ended" for i in range(N)),
        "every co-op sees the action ended",
        within=60,
    )
    for i in (0, 1):
        _cut(fleet, i)
        assert _released(fleet, i, held[i])
    wait_until(lambda: fleet.holders(held[0]) == {1, 2}, "co-op 0's held record flowed", within=90)
    wait_until(lambda: fleet.holders(held[1]) == {0, 2}, "co-op 1's held record flowed", within=90)
    assert {held[0], held[1]} <= _federated_uids(fleet, 2)


def test_forged_under_signed_and_expired_actions_are_refused(fleet: Fleet) -> None:

    now = int(dt.datetime.now(dt.UTC).timestamp())
    with _client(fleet, 0) as client:
        # Expired: an end date already past is refused as input.
        past = dt.datetime.fromtimestamp(now - 86_400, dt.UTC).date().isoformat()
        expired = client.post(
            "/api/v1/federation/actions",
            json={
                "kind": "freeze",
                "reason": "too late",
                "threshold": 1,
                "coops": [fleet.ids[0]],
                "ends_at": past,
            },
        )
        assert expired.status_code == 422, expired.text
        assert "ends_at" in expired.json().get("field", "") or "ends_at" in expired.text
        # Under-signed: 3 of 3 needed, one signed: pending, binding no one, the flow untouched.
        under = client.post(
            "/api/v1/federation/actions",
            json={
                "kind": "freeze",
                "reason": "all or nothing",
                "threshold": 3,
                "coops": fleet.ids,
                "ends_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).date().isoformat(),
            },
        )
        assert under.status_code == 201, under.text
        pending = under.json()["action"]
        assert pending["status"] == "pending"
    uid = _share(fleet, 0, tagged=False)
    _cut(fleet, 0)
    wait_until(lambda: fleet.holders(uid) == {1, 2}, "the record flowed under a pending action", within=90)

    # Forged, from a pinned peer: co-op 1 gossips to co-op 2 an action that claims co-op 0
    # proposed it and a statement that claims co-op 0 signed it, both signed with co-op 1's key.
    seed = bytes(DataDir(fleet.roots[1]).signing_key())
    forger = Signer(seed)
    document = JointAction(
        proposer=fleet.ids[0],
        kind=JointKind.FREEZE,
        selector=JointSelector(),
        reason="forged by a peer",
        starts_at=now,
        ends_at=now + 86_400,
        threshold=1,
        coops=tuple(sorted(fleet.ids)),
        created_at=now,
        nonce=secrets.token_hex(16),
    )
    forged = make_action(document, forger)
    statement = make_statement(
        JointStatement(action=action_id_of(forged), coop=fleet.ids[0], decision="sign", at=now, via="admin"),
        forger,
    )
    url = f"{fleet.nodes[2].url}/federation/v1/joint"
    body = msgspec.json.encode(
        JointMessage(
            digest=JointDigest(actions=(), statements=()), actions=(forged,), statements=(statement,)
        )
    )
    headers = sign_request("POST", url, body, signer=forger, now=int(time.time()), nonce=secrets.token_hex(8))
    pushed = httpx.post(
        url, content=body, headers={"Content-Type": "application/json", **headers}, timeout=30
    )
    assert pushed.status_code in (200, 400, 422), pushed.text
    listed = httpx.get(f"{fleet.nodes[2].url}/api/v1/federation/actions", timeout=30).json()
    actions = listed["actions"] if isinstance(listed, dict) else listed
    assert all(a["reason"] != "forged by a peer" for a in actions)
    assert all(a["id"] != action_id_of(forged) for a in actions)
    # Nothing binds co-op 0: its next record still flows.
    again = _share(fleet, 0, tagged=False)
    _cut(fleet, 0)
    wait_until(lambda: fleet.holders(again) == {1, 2}, "co-op 0's record still flows", within=90)


def action_id_of(envelope: bytes) -> str:
    from coop.federation.joint import action_id

    return action_id(_payload(envelope))


def _payload(envelope: bytes) -> bytes:
    import base64

    return base64.b64decode(json.loads(envelope)["payload"])
