"""Attribution: what a record, a release, a ledger or a page reveals of who contributed it.

Anonymous records carry no identifier linkable to the member's other records; each pseudonym
has its own hash; ``username`` credits the stored handle; default pseudonyms are random and
stored; a pseudonym cannot pass for another member's name or pseudonym.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from coop.governance import (
    ANONYMOUS_PAYEE,
    Attribution,
    AttributionMode,
    Embargo,
    Record,
    canonical_bytes,
    pseudonym_hash,
)
from coop.node.errors import InputError
from coop.node.members.accounts import Member
from coop.node.members.attribution import (
    Contributor,
    PublicForms,
    claim_member_name,
    fold,
    public_identity,
    refold,
)
from coop.node.members.repository import add_member, ensure_external_member
from coop.node.releases import catalog
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

NO_EMBARGO = Embargo()
SALT = b"k" * 32


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path)
    yield n
    n.close()


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _identifiers(row: dict[str, Any]) -> set[str]:
    """Every value in a public row that could tie it to another row of the same person."""
    found = {row.get("contributor_hash"), (row.get("attribution") or {}).get("name")}
    return {v for v in found if v}


def _mixed(node: Node, member: Member) -> dict[str, str]:
    """One member's records under every attribution: uid -> how it was credited."""
    made = {
        contribute(node, member, attribution="username", license="CC0-1.0"): "username",
        contribute(node, member, attribution="pseudonym:Night Owl", license="CC0-1.0"): "owl",
        contribute(node, member, attribution="pseudonym:Sea Otter", license="CC0-1.0"): "otter",
        contribute(node, member, license="CC0-1.0"): "default",
        contribute(node, member, attribution="anonymous", license="CC0-1.0"): "anonymous",
        contribute(node, member, attribution="anonymous", license="CC0-1.0"): "anonymous",
    }
    process(node)
    return made


def _assert_unlinkable(rows: list[dict[str, Any]], made: dict[str, str], member: Member) -> None:
    mine = [r for r in rows if r["uid"] in made]
    assert len(mine) == len(made)
    anonymous = [r for r in mine if made[r["uid"]] == "anonymous"]
    others = [r for r in mine if made[r["uid"]] != "anonymous"]
    assert len(anonymous) == 2
    for row in anonymous:
        assert row["contributor_hash"] is None
        assert row["attribution"] == {"mode": "anonymous", "name": None}
        assert member.contributor_hash not in json.dumps(row)
        # As a word: a random hex uid or hash may hold the letters "ada" by chance.
        assert not re.search(rf"\b{re.escape(member.name)}\b", json.dumps(row))
    linked = set().union(*(_identifiers(r) for r in others))
    for row in anonymous:
        assert not _identifiers(row) & linked
    by = {made[r["uid"]]: r for r in others}
    assert by["username"]["contributor_hash"] == member.contributor_hash
    assert by["username"]["attribution"]["name"] == member.name
    hashes = {kind: by[kind]["contributor_hash"] for kind in ("owl", "otter", "default")}
    assert len(set(hashes.values())) == 3, "one hash per pseudonym"
    assert member.contributor_hash not in hashes.values()


# -- the record's identity ---------------------------------------------------------------------


def test_public_identity_anonymous_carries_no_name_and_no_hash() -> None:
    who = Contributor(member_hash="a" * 64, handle="ada")
    assert public_identity(Attribution(AttributionMode.ANONYMOUS), who, SALT) == (
        Attribution(AttributionMode.ANONYMOUS),
        None,
    )


def test_public_identity_two_pseudonyms_of_one_member_have_different_hashes() -> None:
    who = Contributor(member_hash="a" * 64, handle="ada")
    _, owl = public_identity(Attribution(AttributionMode.PSEUDONYM, "Night Owl"), who, SALT)
    _, otter = public_identity(Attribution(AttributionMode.PSEUDONYM, "Sea Otter"), who, SALT)
    assert owl != otter
    assert owl == pseudonym_hash(SALT, "a" * 64, "Night Owl")
    assert who.member_hash not in (owl, otter)


def test_public_identity_username_credits_the_stored_handle_not_the_sent_name() -> None:
    who = Contributor(member_hash="a" * 64, handle="ada")
    sent = Attribution(AttributionMode.USERNAME, "alice")
    assert public_identity(sent, who, SALT) == (Attribution(AttributionMode.USERNAME, "ada"), "a" * 64)


# -- default pseudonyms ------------------------------------------------------------------------


def test_default_pseudonym_is_random_stored_and_not_derived_from_the_hash(node: Node) -> None:
    ada, _ = make_member(node, "ada")
    ben, _ = make_member(node, "ben")
    first = node.default_pseudonym(ada)
    assert node.default_pseudonym(ada) == first, "chosen once, then stable"
    (stored,) = node.store.read(
        lambda c: c.execute("SELECT pseudonym FROM members WHERE id = ?", (ada.id,)).fetchone()
    )
    assert stored == first
    assert node.default_pseudonym(ben) != first
    for member, name in ((ada, first), (ben, node.default_pseudonym(ben))):
        assert member.contributor_hash[:8] not in name
        assert name != f"member-{member.contributor_hash[:8]}"
    uid = contribute(node, ada)  # the co-op's default attribution is a pseudonym
    process(node)
    record = node.store.read(lambda c: catalog_record_bytes(c, uid))
    assert record.attribution == Attribution(AttributionMode.PSEUDONYM, first)
    assert record.contributor_hash == pseudonym_hash(node.salt, ada.contributor_hash, first)


def catalog_record_bytes(conn: Any, uid: str) -> Record:
    (data,) = conn.execute(
        "SELECT t.record FROM contents t JOIN contributions c ON c.seq = t.seq WHERE c.uid = ?", (uid,)
    ).fetchone()
    return msgspec.json.decode(data, type=Record)


# -- impersonation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pseudonym",
    [
        pytest.param("alice", id="exact-name"),
        pytest.param("ALICE", id="case-folded-name"),
        pytest.param("\uff41\uff4c\uff49\uff43\uff45", id="fullwidth-name"),
        pytest.param("\u0430lice", id="cyrillic-a-look-alike"),
        pytest.param("night owl", id="case-folded-pseudonym-of-another"),
        pytest.param("Ｎight Ｏwl", id="fullwidth-pseudonym-of-another"),
        pytest.param("Anonymous", id="reserved-word"),
    ],
)
def test_settle_pseudonym_passing_for_another_member_is_refused(node: Node, pseudonym: str) -> None:
    alice, _ = make_member(node, "alice")
    mallory, _ = make_member(node, "mallory")
    contribute(node, alice, attribution="pseudonym:Night Owl")
    with pytest.raises(InputError) as caught:
        contribute(node, mallory, attribution=f"pseudonym:{pseudonym}")
    assert caught.value.field == "attribution"
    assert pseudonym in caught.value.message or "anonymous" in caught.value.message
    assert node.store.read(lambda c: c.execute("SELECT count(*) FROM contributions").fetchone()) == (1,)


def test_settle_member_reuses_own_pseudonym_in_any_case(node: Node) -> None:
    alice, _ = make_member(node, "alice")
    contribute(node, alice, attribution="pseudonym:Night Owl")
    contribute(node, alice, attribution="pseudonym:night owl")
    contribute(node, alice, attribution="pseudonym:Night Owl")
    process(node)
    states = node.store.read(lambda c: c.execute("SELECT state FROM contributions").fetchall())
    assert len(states) == 3


def test_add_member_name_of_a_pseudonym_in_use_is_refused(node: Node) -> None:
    alice, _ = make_member(node, "alice")
    contribute(node, alice, attribution="pseudonym:Night Owl")
    with pytest.raises(InputError) as caught:
        make_member(node, "NIGHT OWL")
    assert caught.value.field == "name"
    with pytest.raises(InputError):
        make_member(node, node.default_pseudonym(alice))


def test_username_attribution_credits_the_stored_handle(node: Node) -> None:
    ada, _ = make_member(node, "ada")
    forged = msgspec.structs.replace(ada, name="alice")  # a client-supplied name never counts
    uid = contribute(node, forged, attribution="username")
    process(node)
    record = node.store.read(lambda c: catalog_record_bytes(c, uid))
    assert record.attribution == Attribution(AttributionMode.USERNAME, "ada")
    assert record.contributor_hash == ada.contributor_hash


def test_fold_maps_width_case_and_look_alikes_together() -> None:
    assert fold("ＡＬＩＣＥ") == fold("alice") == fold("\u0430lice") == fold("  Alice ")
    assert fold("alice") != fold("alicia")


# -- look-alike names: the review's findings ---------------------------------------------------

HOSTILE_DISPLAY_NAMES = [
    pytest.param("ADA", id="upper-case"),
    pytest.param("\u0430da", id="cyrillic-a"),
    pytest.param("a\u200bda", id="zero-width-space"),
    pytest.param("\u202eada", id="bidi-override"),
    pytest.param("ada\u200f", id="right-to-left-mark"),
    pytest.param("\u0000ada", id="nul"),
    pytest.param("ada\nfake", id="newline"),
    pytest.param("\u0251da", id="latin-alpha"),
    pytest.param("ada\u0301", id="combining-accent"),
    pytest.param("\u200b", id="nothing-visible"),
]


def _claims(node: Node) -> list[tuple[str, int, str, str]]:
    return node.store.read(
        lambda c: c.execute("SELECT folded, member_id, kind, name FROM claimed_names").fetchall()
    )


@pytest.mark.parametrize("shown", HOSTILE_DISPLAY_NAMES)
def test_integration_user_named_like_a_member_gets_a_clean_handle_of_its_own(node: Node, shown: str) -> None:
    make_member(node, "ada", admin=True)
    user = node.store.write(
        lambda c: ensure_external_member(
            c, provider="openwebui", external_id="u-1", name=shown, email=None, salt=node.salt, now=1
        )
    )
    assert user.name != "ada"
    assert fold(user.name) != fold("ada"), user.name
    assert user.name.isprintable() and user.name == user.name.strip()
    assert not any(unicodedata.category(c) in ("Cf", "Cc", "Zl", "Zp") for c in user.name), user.name
    folds = [row[0] for row in _claims(node) if row[2] == "member"]
    assert len(folds) == len(set(folds)) == 2, "every handle folds to a name of its own"


def test_integration_users_with_one_name_get_suffixed_handles(node: Node) -> None:
    make_member(node, "ada")
    handles = [
        node.store.write(
            lambda c, i=i: ensure_external_member(
                c, provider="openwebui", external_id=f"u-{i}", name=" Ada ", email=None, salt=node.salt, now=1
            )
        ).name
        for i in range(3)
    ]
    assert handles == ["Ada-2", "Ada-3", "Ada-4"]


@pytest.mark.parametrize("name", ["ADA", "Ada", "\u0251da", "ada\u0301", "a\u200bda"])
def test_add_member_name_that_folds_to_a_members_handle_is_refused(node: Node, name: str) -> None:
    make_member(node, "ada")
    with pytest.raises(InputError) as caught:
        make_member(node, name)
    assert caught.value.field == "name"


def test_claim_of_a_name_another_member_holds_is_never_silently_ignored(node: Node) -> None:
    make_member(node, "ada")
    ben, _ = make_member(node, "ben")
    with pytest.raises(InputError):
        node.store.write(lambda c: claim_member_name(c, member_id=ben.id, name="ADA", now=1))
    assert [row for row in _claims(node) if row[1] == ben.id and row[2] == "member"] == [
        (fold("ben"), ben.id, "member", "ben")
    ]


@pytest.mark.parametrize(
    "pseudonym",
    [
        pytest.param("\u0251da", id="latin-alpha"),
        pytest.param("\u03f2leo", id="greek-lunate-sigma"),
        pytest.param("cl\u212eo", id="estimated-symbol"),
        pytest.param("ada\u0301", id="combining-accent"),
        pytest.param("\u0430\u0435", id="cyrillic-only-look-alike"),
    ],
)
def test_settle_confusable_pseudonym_of_a_member_is_refused(node: Node, pseudonym: str) -> None:
    make_member(node, "ada")
    make_member(node, "cleo")
    make_member(node, "ae")
    mallory, _ = make_member(node, "mallory")
    with pytest.raises(InputError) as caught:
        contribute(node, mallory, attribution=f"pseudonym:{pseudonym}")
    assert caught.value.field == "attribution"


@pytest.mark.parametrize("pseudonym", ["Night\u00a0Owl!", "p\u0430ypal", "owl \u2764"])
def test_settle_pseudonym_with_symbols_or_mixed_scripts_is_refused(node: Node, pseudonym: str) -> None:
    member, _ = make_member(node, "ada")
    with pytest.raises(InputError) as caught:
        contribute(node, member, attribution=f"pseudonym:{pseudonym}")
    assert caught.value.field == "attribution"


def test_fold_is_the_confusables_skeleton_case_folded() -> None:
    assert fold("\u0251da") == fold("ada\u0301") == fold("ADA") == fold("a\u200bda") == fold("ada")
    assert fold("\u03f2leo") == fold("cl\u212eo") == fold("CLEO") == fold("cleo")
    assert fold("AIice") == fold("a1ice") == fold("alice")
    assert fold("rnary") == fold("mary")
    assert fold("night owl") != fold("night owls")


def test_settle_spelling_variants_of_ones_pseudonym_carry_the_spelling_claimed(node: Node) -> None:
    member, _ = make_member(node, "ada")
    uids = [
        contribute(node, member, attribution=f"pseudonym:{name}", license="CC0-1.0")
        for name in ("crisp-puffin-066", "Crisp-Puffin-066", "CRISP-PUFFIN-066")
    ]
    process(node)
    names = {node.store.read(lambda c, u=u: catalog_record_bytes(c, u)).attribution.name for u in uids}
    assert names == {"crisp-puffin-066"}
    node.cut_release()
    view = node.payout(1, amount="10.00", currency="EUR", actor="admin")
    assert [line.payee for line in view.ledger.lines if line.payee != "commons"] == ["crisp-puffin-066"]


def test_refold_brings_claims_stored_under_an_earlier_fold_up_to_date(node: Node) -> None:
    make_member(node, "alice")
    node.store.write(lambda c: c.execute("UPDATE claimed_names SET folded = 'alice' WHERE name = 'alice'"))
    assert node.store.write(refold) == 1
    mallory, _ = make_member(node, "mallory")
    with pytest.raises(InputError):
        contribute(node, mallory, attribution="pseudonym:AIice")


def test_node_start_brings_stale_claims_up_to_date(node: Node) -> None:
    make_member(node, "alice")
    node.store.write(lambda c: c.execute("UPDATE claimed_names SET folded = 'alice' WHERE name = 'alice'"))
    reopened = Node(node.data.root)
    try:
        mallory, _ = make_member(reopened, "mallory")
        with pytest.raises(InputError):
            contribute(reopened, mallory, attribution="pseudonym:AIice")
    finally:
        reopened.close()


def test_payout_supersede_reason_with_nothing_visible_is_refused(node: Node) -> None:
    member, _ = make_member(node, "ada")
    contribute(node, member, attribution="username")
    process(node)
    node.cut_release()
    node.payout(1, amount="10.00", currency="EUR", actor="admin")
    for reason in ("\u200b", " \u200e\u2028\u00a0", "\u0000\u202e"):
        with pytest.raises(InputError) as caught:
            node.payout(1, amount="12.00", currency="EUR", actor="admin", supersede=reason)
        assert caught.value.field == "supersede"
    again = node.payout(
        1, amount="12.00", currency="EUR", actor="admin", supersede="\u200bthe buyer paid more\u200b"
    )
    assert again.supersede_reason == "the buyer paid more"


# -- every public output ---------------------------------------------------------------------


def test_release_anonymous_records_share_no_identifier_with_the_members_other_records(node: Node) -> None:
    member, _ = make_member(node, "ada")
    made = _mixed(node, member)
    summary = node.cut_release()
    root = node.data.releases_path / summary.name / "cc0"
    _assert_unlinkable(_rows(root / "data.jsonl"), made, member)
    _assert_unlinkable(pq.read_table(root / "data.parquet").to_pylist(), made, member)


def test_federated_release_anonymous_records_share_no_identifier(node: Node) -> None:
    member, _ = make_member(node, "ada")
    made = _mixed(node, member)
    node.cut_release()
    summary = node.cut_federated_release()
    root = node.data.releases_path / "federated" / summary.name / "cc0"
    _assert_unlinkable(_rows(root / "data.jsonl"), made, member)
    _assert_unlinkable(pq.read_table(root / "data.parquet").to_pylist(), made, member)


def test_catalog_leaderboard_and_record_page_never_group_anonymous_records_per_member(node: Node) -> None:
    ada, _ = make_member(node, "ada")
    ben, _ = make_member(node, "ben")
    made = _mixed(node, ada)
    contribute(node, ben, attribution="anonymous")
    process(node)
    node.cut_release()
    node.index_catalog()
    boards = node.store.read(lambda c: catalog.leaderboards(c, embargo=NO_EMBARGO))
    names = {row[0]: row for row in boards.contributors}
    assert names["anonymous"][1:] == (3, 0), "all anonymous records on one row, of every member"
    assert {"ada", "Night Owl", "Sea Otter", node.default_pseudonym(ada)} <= set(names)
    for uid, kind in made.items():
        shown = node.store.read(lambda c, uid=uid: catalog.record(c, uid, embargo=NO_EMBARGO))
        assert shown is not None
        if kind == "anonymous":
            assert shown.contributor_hash is None
            assert shown.attribution.name is None


def test_payout_public_ledger_shows_choices_and_internal_ledger_pays_each_member(node: Node) -> None:
    ada, _ = make_member(node, "ada")
    ben, _ = make_member(node, "ben")
    _mixed(node, ada)
    contribute(node, ben, attribution="anonymous", license="CC0-1.0")
    contribute(node, ben, attribution="anonymous", label="fail", correction="It is 42.", license="CC0-1.0")
    process(node)
    node.cut_release()
    view = node.payout(1, amount="1000.01", currency="EUR", actor="admin")
    public = {line.payee: line for line in view.ledger.lines}
    assert view.ledger.total_minor() == 100001
    assert set(public) == {
        "commons",
        "ada",
        "Night Owl",
        "Sea Otter",
        node.default_pseudonym(ada),
        ANONYMOUS_PAYEE,
    }
    assert public[ANONYMOUS_PAYEE].records == 4, "ada's and ben's anonymous records on one line"
    folder = node.data.root / "payouts"
    text = (folder / "payout-1-v1.csv").read_text() + (folder / "payout-1-v1.json").read_text()
    assert "ben" not in text
    for member in (ada, ben):
        assert member.contributor_hash[:8] not in text
    rows = list(csv.DictReader(io.StringIO((folder / "payout-1-v1.csv").read_text())))
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal("1000.01")
    assert json.loads((folder / "payout-1-v1.json").read_text())["ledger"]["amount_minor"] == 100001

    internal = node.store.read(lambda c: attribution_ledger(c, view.id))
    paid = {line.payee: line for line in internal.lines}
    assert set(paid) == {"commons", "ada", "ben"}
    assert internal.total_minor() == 100001
    assert paid["ben"].records == 2 and paid["ada"].records == 6
    # The two ledgers agree to the unit: ada's lines in public + her share of the anonymous line.
    ada_named = sum(public[p].amount_minor for p in public if p not in ("commons", ANONYMOUS_PAYEE))
    assert (
        ada_named + public[ANONYMOUS_PAYEE].amount_minor
        == paid["ada"].amount_minor + paid["ben"].amount_minor
    )
    members_csv = (folder / "members" / "payout-1-v1.csv").read_text()
    assert "ben" in members_csv


def attribution_ledger(conn: Any, payout: int) -> Any:
    from coop.node.collective.payouts import member_ledger

    ledger = member_ledger(conn, payout)
    assert ledger is not None
    return ledger


# -- data from before ------------------------------------------------------------------------------


def _as_legacy(node: Node, uid: str, member: Member) -> bytes:
    """Store a record as earlier versions did: the member's hash on it, whatever the attribution."""
    record = node.store.read(lambda c: catalog_record_bytes(c, uid))
    if record.attribution.mode is AttributionMode.PSEUDONYM:
        legacy_name = f"member-{member.contributor_hash[:8]}"
        record = msgspec.structs.replace(
            record, attribution=Attribution(AttributionMode.PSEUDONYM, legacy_name)
        )
    data = canonical_bytes(msgspec.structs.replace(record, contributor_hash=member.contributor_hash))
    node.store.write(
        lambda c: c.execute(
            "UPDATE contents SET record = ? WHERE seq = (SELECT seq FROM contributions WHERE uid = ?)",
            (data, uid),
        )
    )
    return data


def test_old_records_with_the_member_hash_leave_in_their_public_form(node: Node) -> None:
    member, _ = make_member(node, "ada")
    named = contribute(node, member, attribution="username", license="CC0-1.0")
    hidden = contribute(node, member, attribution="anonymous", license="CC0-1.0")
    default = contribute(node, member, license="CC0-1.0")
    process(node)
    old_hidden = _as_legacy(node, hidden, member)
    old_default = _as_legacy(node, default, member)
    forms = node.store.read(PublicForms.load)
    assert forms.changes(old_hidden) and forms.changes(old_default)
    named_bytes = canonical_bytes(node.store.read(lambda c: catalog_record_bytes(c, named)))
    assert forms.apply(named_bytes) is named_bytes
    summary = node.cut_release()
    rows = {r["uid"]: r for r in _rows(node.data.releases_path / summary.name / "cc0" / "data.jsonl")}
    assert rows[hidden]["contributor_hash"] is None
    assert rows[default]["contributor_hash"] is None
    assert rows[default]["attribution"]["name"] == node.default_pseudonym(member)
    assert rows[named]["contributor_hash"] == member.contributor_hash


def test_upgrade_gives_members_from_before_a_random_pseudonym_and_claims_their_names(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    alice, _ = make_member(node, "alice")
    contribute(node, alice, attribution="pseudonym:Night Owl")
    root = node.data.root

    def forget(conn: Any) -> None:  # what a data directory from before migration 10 looks like
        conn.execute("UPDATE members SET pseudonym = NULL")
        conn.execute("DELETE FROM claimed_names")

    node.store.write(forget)
    node.close()
    reopened = Node(root)
    try:
        chosen = reopened.default_pseudonym(alice)
        assert chosen and not chosen.startswith("member-")
        mallory, _ = reopened.store.write(
            lambda c: add_member(c, name="mallory", role=alice.role, salt=reopened.salt, now=1)
        )
        for taken in ("pseudonym:ALICE", "pseudonym:night owl", f"pseudonym:{chosen}"):
            with pytest.raises(InputError):
                contribute(reopened, mallory, attribution=taken)
    finally:
        reopened.close()
