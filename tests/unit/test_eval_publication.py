"""Published eval reports (issue 13): each co-op's consent, stamped in its attestation, decides
what a leaderboard shows; invalid or tampered reports are refused; publishing is audited.

The consent matrix is generated: every combination of none / aggregate / named over three
co-ops, each checked against the rule as the brief states it.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient

from coop.eval import (
    Attestation,
    Decline,
    Filters,
    NodeAnswer,
    Noise,
    build_label_agreement_model,
    build_report,
    build_request,
    consent_view,
    get_evaluator,
    open_attestation,
    open_request,
    seal_attestation,
)
from coop.eval.publication import NOT_NAMED, WITHHELD_CONSENT, WITHHELD_ONE
from coop.eval.report import ATTESTATION_TYPE, REPORT_TYPE, Report
from coop.governance import canonical_bytes, public_key, sha256_hex
from coop.governance.envelope import open_envelope, seal
from coop.governance.errors import InvalidValueError
from coop.governance.signing import Signer
from coop.node.cli import main
from coop.node.collective.audit import audit_entries
from coop.node.collective.settings import Actor
from coop.node.errors import ConflictError, InputError, NotFoundError
from coop.node.http.app import create_app
from coop.node.runtime import Node
from coop.node.web.static_site import build_site

from factories import contribute, make_member, make_node, process

REQUESTER = bytes(range(32))
SEEDS = (bytes([11]) * 32, bytes([12]) * 32, bytes([13]) * 32)
NODES = tuple(public_key(seed).hex() for seed in SEEDS)
NAMES = ("Alder co-op", "Birch co-op", "Cedar co-op")
RECORDS = (101, 202, 303)  # distinct, so a page that shows one is caught showing it
NOW = 1_800_000_000
EVALUATOR = get_evaluator("label-agreement")
SCHEMA = frozenset(EVALUATOR.statistic_sensitivity())
MODEL = build_label_agreement_model([("thanks", True), ("wrong", False)] * 4, dim=256, seed=1)
CONSENTS = ("none", "aggregate", "named")


def signed_request(targets: Sequence[str] = NODES, *, now: int = NOW, lifetime: int = 3600) -> bytes:
    return build_request(
        signer=Signer(REQUESTER),
        task="label-agreement",
        model_name="tiny-model.npz",
        artifact=MODEL,
        targets=list(targets),
        purpose="how well does it tell good from fail",
        filters=Filters(),
        now=now,
        lifetime=lifetime,
        nonce=secrets.token_hex(8),
    )


REQUEST = signed_request()
VERIFIED = open_request(REQUEST, now=NOW, artifact=MODEL)


def _stats(n: int) -> dict[str, int]:
    stats = dict.fromkeys(SCHEMA, 0)
    stats.update(n=n, tp=n // 2, tn=n // 4, log_loss_nano=n * 10**8, hist_fail_100=n // 2)
    stats["hist_good_900"] = n - n // 2
    return stats


def attested(
    index: int, publication: str | None, *, noise: Noise | None = None, request: bytes = REQUEST
) -> NodeAnswer:
    """Co-op ``index``'s signed answer; ``publication=None`` is an attestation from before the field."""
    verified = open_request(request, now=NOW, artifact=MODEL)
    attestation = Attestation(
        node_id=NODES[index],
        request_hash=verified.hash,
        task="label-agreement",
        model_sha256=verified.request.model_sha256,
        records=RECORDS[index],
        statistics=_stats(RECORDS[index]),
        noise=noise or Noise(),
        issued_at=NOW,
        coop=NAMES[index],
        publication=publication or "none",
    )
    if publication is None:
        old = msgspec.json.decode(canonical_bytes(attestation))
        del old["publication"]
        sealed = seal(canonical_bytes(old), ATTESTATION_TYPE, [Signer(SEEDS[index])])
    else:
        sealed = seal_attestation(attestation, Signer(SEEDS[index]))
    return NodeAnswer(node_id=NODES[index], attestation=sealed.decode(), coop=NAMES[index])


def declined(
    index: int, reason: Decline = Decline.TOO_FEW_RECORDS, detail: str = "7 eligible records"
) -> NodeAnswer:
    return NodeAnswer(node_id=NODES[index], decline=reason, detail=detail, coop=NAMES[index])


def report_of(answers: Sequence[NodeAnswer], *, request: bytes = REQUEST) -> bytes:
    verified = open_request(request, now=NOW, artifact=MODEL)
    return build_report(
        request_envelope=request,
        request_hash=verified.hash,
        task="label-agreement",
        model_sha256=verified.request.model_sha256,
        purpose=verified.request.purpose,
        answers=answers,
        finalize=EVALUATOR.finalize,
        schema=SCHEMA,
        created_at=NOW,
        signer=Signer(REQUESTER),
    )


def _decoded(data: bytes) -> Report:
    _, payload = open_envelope(data, payload_type=REPORT_TYPE, max_bytes=1 << 24)
    return msgspec.json.decode(payload, type=Report)


# -- the consent matrix -----------------------------------------------------------------------


@pytest.mark.parametrize("consents", list(itertools.product(CONSENTS, repeat=3)), ids="-".join)
def test_publication_consent_matrix_decides_what_appears(consents: tuple[str, str, str]) -> None:
    data = report_of([attested(i, c) for i, c in enumerate(consents)])
    view = consent_view(_decoded(data), digest=sha256_hex(data))
    shown = {c.node_id: c for c in view.coops if c.node_id is not None}
    for index, consent in enumerate(consents):
        if consent == "named":
            line = shown[NODES[index]]
            assert (line.label, line.records) == (NAMES[index], RECORDS[index])
            assert line.metrics and line.noise == Noise()
        else:
            assert NODES[index] not in shown
    hidden = [c for c in view.coops if c.node_id is None]
    assert len(hidden) == sum(c != "named" for c in consents)
    assert all(c.label == NOT_NAMED and c.records is None and c.metrics is None for c in hidden)
    unnamed = sum(c != "named" for c in consents)
    if "none" in consents:
        assert (view.aggregate_metrics, view.aggregate_records, view.aggregate_note) == (
            None,
            None,
            WITHHELD_CONSENT,
        )
    elif unnamed == 1:  # the aggregate minus the named co-ops would be the one unnamed co-op
        assert view.aggregate_metrics is None and view.aggregate_note == WITHHELD_ONE
    else:
        assert view.aggregate_records == sum(RECORDS) and view.aggregate_metrics
    assert view.downloadable is (consents == ("named", "named", "named"))
    text = msgspec.json.encode(view).decode()
    for index, consent in enumerate(consents):
        if consent != "named":
            assert NAMES[index] not in text and NODES[index] not in text
            assert f":{RECORDS[index]}," not in text  # its record count, anywhere as a JSON number


def test_publication_old_attestation_without_the_field_counts_as_none() -> None:
    data = report_of([attested(0, None), attested(1, "named"), attested(2, "named")])
    view = consent_view(_decoded(data), digest=sha256_hex(data))
    assert [c.label for c in view.coops] == [NAMES[1], NAMES[2], NOT_NAMED]
    assert view.aggregate_note == WITHHELD_CONSENT and not view.downloadable


def test_publication_declined_coop_is_not_named_and_stops_the_download() -> None:
    data = report_of([attested(0, "named"), attested(1, "named"), declined(2)])
    view = consent_view(_decoded(data), digest=sha256_hex(data))
    (decliner,) = [c for c in view.coops if c.node_id is None]
    assert (decliner.label, decliner.declined, decliner.answered) == (NOT_NAMED, "too_few_records", False)
    assert "7 eligible" not in msgspec.json.encode(view).decode()  # a decline's detail may hold a count
    assert view.aggregate_records == RECORDS[0] + RECORDS[1]  # the answering co-ops are all named
    assert not view.downloadable
    # Still told how to check the requester's copy (a --trust list would have to name the unnamed).
    assert view.verify_hint == "coop eval verify REPORT.json"


def test_settings_publication_is_validated_by_name() -> None:
    from coop.governance import Publication, Settings, apply_changes

    assert Settings().eval_policy.publication is Publication.NONE
    assert apply_changes(Settings(), {"eval_policy.publication": "named"}).eval_policy.publication == "named"
    with pytest.raises(InvalidValueError) as caught:
        apply_changes(Settings(), {"eval_policy.publication": "everyone"})
    assert caught.value.field == "eval_policy.publication"


# -- the node: publish, refuse, unpublish, audit ------------------------------------------------


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path)
    try:
        # The attesting co-ops are this co-op's pinned peers, known by the names it gave them.
        for index, (node_id, name) in enumerate(zip(NODES, NAMES, strict=True)):
            node.federation.add_peer(f"http://127.0.0.{index + 2}:9", node_id, name=name, actor="ada")
        yield node
    finally:
        node.close()


def _actions(node: Node) -> list[str]:
    return [e.action for e in node.store.read(audit_entries)]


def test_publish_stores_the_signed_bytes_and_unpublish_removes_them_both_audited(node: Node) -> None:
    data = report_of([attested(i, "named") for i in range(3)])
    view = node.eval_reports.publish(data, actor="ada")
    assert view.hash == sha256_hex(data) and view.downloadable
    assert node.eval_reports.download(view.hash) == data
    assert node.eval_reports.publish(data, actor="ada").hash == view.hash  # again: nothing new
    assert _actions(node).count("eval.published") == 1
    assert node.eval_reports.unpublish(view.hash[:12], actor="ada") == view.hash
    assert node.eval_reports.listing() == []
    assert _actions(node)[-2:] == ["eval.published", "eval.unpublished"]
    with pytest.raises(NotFoundError):
        node.eval_reports.unpublish(view.hash, actor="ada")


def test_publish_refuses_garbage_tampered_and_unsummed_reports_naming_the_problem(node: Node) -> None:
    data = report_of([attested(i, "named") for i in range(3)])
    envelope = json.loads(data)
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["purpose"] = "something else"  # the bytes the signature covers, changed
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    tampered = json.dumps(envelope).encode()
    report = _decoded(data)
    inflated = msgspec.structs.replace(
        report, aggregate=msgspec.structs.replace(report.aggregate, records=report.aggregate.records + 1)
    )
    resigned = seal(canonical_bytes(inflated), REPORT_TYPE, [Signer(REQUESTER)])
    cases = {
        b"not json": "not a report",
        tampered: "signature does not verify",
        resigned: "the aggregate is not the sum",
    }
    for bad, problem in cases.items():
        with pytest.raises(InputError) as caught:
            node.eval_reports.publish(bad, actor="ada")
        assert caught.value.field == "report" and problem in caught.value.message
    assert node.eval_reports.listing() == [] and "eval.published" not in _actions(node)


def test_download_is_refused_unless_every_coop_is_named(node: Node) -> None:
    data = report_of([attested(0, "named"), attested(1, "named"), attested(2, "aggregate")])
    view = node.eval_reports.publish(data, actor="ada")
    assert not view.downloadable
    with pytest.raises(NotFoundError):
        node.eval_reports.download(view.hash)


def test_node_stamps_its_publication_setting_in_attestations(node: Node) -> None:
    member, _ = make_member(node)
    for i in range(12):
        words = "thanks correct helpful" if i % 2 else "wrong error broken"
        contribute(
            node, member, text=f"User: q {i}?\nAssistant: {words} {i}", label="good" if i % 2 else "fail"
        )
    process(node)
    admin = Actor("ada", admin=True)
    node.change_settings({"eval_policy.min_records": 10}, actor=admin)
    seen = []
    for consent in ("none", "named"):
        if consent != "none":
            node.change_settings({"eval_policy.publication": consent}, actor=admin)
        envelope = signed_request([node.identity.node_id], now=node.now())
        answer = node.evaluation.answer(envelope, MODEL)
        assert answer.attestation is not None, answer
        seen.append(open_attestation(answer.attestation.encode())[0].publication)
    assert seen == ["none", "named"]


# -- through the app: the page, the JSON API, the download, the admin route -------------------


def test_http_leaderboards_page_api_and_download_follow_consent(node: Node, tmp_path: Path) -> None:
    _, admin_token = make_member(node, "ada", admin=True)
    _, member_token = make_member(node, "robin")
    whole = report_of([attested(i, "named") for i in range(3)])
    other = signed_request()  # another request: one report per request is shown
    partial = report_of(
        [
            attested(0, "named", request=other),
            attested(1, "aggregate", noise=Noise("laplace", 500), request=other),
            attested(2, "none", request=other),
        ],
        request=other,
    )
    with TestClient(create_app(node, background=False), base_url="http://testserver.local") as client:
        admin = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
        member = {"Authorization": f"Bearer {member_token}", "Content-Type": "application/json"}
        assert client.post("/api/v1/admin/eval/reports", content=whole, headers=member).status_code == 403
        refused = client.post("/api/v1/admin/eval/reports", content=b"{}", headers=admin)
        assert refused.status_code == 422 and refused.json()["field"] == "report"
        for data in (whole, partial):
            assert client.post("/api/v1/admin/eval/reports", content=data, headers=admin).status_code == 201

        listed = {r["hash"]: r for r in client.get("/api/v1/eval/reports").json()}
        assert listed[sha256_hex(whole)]["downloadable"] is True
        hidden = listed[sha256_hex(partial)]
        assert hidden["downloadable"] is False and hidden["aggregate_note"] == WITHHELD_CONSENT
        assert NAMES[1] not in json.dumps(hidden) and NAMES[2] not in json.dumps(hidden)

        assert client.get(f"/eval/reports/{sha256_hex(whole)}.json").content == whole
        assert client.get(f"/eval/reports/{sha256_hex(partial)}.json").status_code == 404

        page = client.get("/leaderboards", headers={"Accept": "text/html"}).text
        assert "Model evaluations" in page and "tiny-model.npz" in page and "label-agreement" in page
        assert f'href="/eval/reports/{sha256_hex(whole)}.json"' in page
        assert f"/eval/reports/{sha256_hex(partial)}.json" not in page
        assert f"coop eval verify {sha256_hex(whole)}.json --trust" in page
        article = page.split(f'id="ev-{sha256_hex(partial)[:16]}"', 1)[1].split("</article>", 1)[0]
        assert NAMES[0] in article and f"<td>{RECORDS[0]}</td>" in article
        assert NAMES[1] not in article and NAMES[2] not in article and NODES[1] not in article
        assert NOT_NAMED in article and WITHHELD_CONSENT in article
        assert f"<td>{RECORDS[1]}</td>" not in article and "laplace" not in article

        gone = client.delete(f"/api/v1/admin/eval/reports/{sha256_hex(partial)}", headers=admin)
        assert gone.status_code == 200 and len(client.get("/api/v1/eval/reports").json()) == 1
    site = build_site(node, tmp_path / "site")
    html = (Path(site.out) / "leaderboards" / "index.html").read_text(encoding="utf-8")
    assert "tiny-model.npz" in html and NAMES[2] in html  # the whole report: every co-op named
    assert (Path(site.out) / "eval" / "reports" / f"{sha256_hex(whole)}.json").read_bytes() == whole


def test_static_site_writes_no_report_a_coop_did_not_consent_to(node: Node, tmp_path: Path) -> None:
    partial = report_of([attested(0, "named"), attested(1, "named"), attested(2, "aggregate")])
    node.eval_reports.publish(partial, actor="ada")
    site = build_site(node, tmp_path / "site")
    html = (Path(site.out) / "leaderboards" / "index.html").read_text(encoding="utf-8")
    assert NOT_NAMED in html and WITHHELD_ONE in html and NAMES[2] not in html
    assert not (Path(site.out) / "eval").exists()


def test_cli_publish_and_unpublish(node: Node, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(report_of([attested(i, "named") for i in range(3)]))
    root = str(node.data.root)
    node.close()
    assert main(["eval", "publish", root, str(path)]) == 0
    assert "3/3 co-ops named" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{}")
    assert main(["eval", "publish", root, str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "does not verify" in err
    digest = sha256_hex(path.read_bytes())
    assert main(["eval", "unpublish", root, digest[:10]]) == 0
    assert f"unpublished {digest}" in capsys.readouterr().out


# -- whose numbers a co-op vouches for (review findings) ----------------------------------------


def test_a_report_with_numbers_signed_by_an_unknown_key_is_refused(tmp_path: Path) -> None:
    """Anyone can make a key and sign numbers under a real co-op's name; only pinned keys count."""
    node = make_node(tmp_path)
    try:
        node.federation.add_peer("http://127.0.0.2:9", NODES[0], name=NAMES[0], actor="ada")
        data = report_of([attested(0, "named"), attested(1, "named"), declined(2)])
        with pytest.raises(InputError) as caught:
            node.eval_reports.publish(data, actor="ada")
        assert caught.value.field == "report" and NODES[1][:16] in caught.value.message
        assert node.eval_reports.listing() == []
        node.federation.add_peer("http://127.0.0.3:9", NODES[1], name="Birch (as we know it)", actor="ada")
        view = node.eval_reports.publish(data, actor="ada")
        # Shown under the name this co-op pinned it by, not the name the attestation gives itself.
        assert {c.label for c in view.coops if c.node_id} == {NAMES[0], "Birch (as we know it)"}
    finally:
        node.close()


def test_an_unnamed_coop_without_records_does_not_hide_the_one_that_has_them() -> None:
    """A made-up second unnamed co-op with no records would leave the aggregate = the real one's."""
    answers = [attested(0, "named"), attested(1, "aggregate"), _empty_attestation(2, "aggregate")]
    view = consent_view(_decoded(report_of(answers)), digest="0" * 64)
    assert view.aggregate_metrics is None and view.aggregate_note == WITHHELD_ONE


def _empty_attestation(index: int, publication: str) -> NodeAnswer:
    attestation = Attestation(
        node_id=NODES[index],
        request_hash=VERIFIED.hash,
        task="label-agreement",
        model_sha256=VERIFIED.request.model_sha256,
        records=0,
        statistics=dict.fromkeys(SCHEMA, 0),
        noise=Noise(),
        issued_at=NOW,
        coop=NAMES[index],
        publication=publication,
    )
    return NodeAnswer(
        node_id=NODES[index], attestation=seal_attestation(attestation, Signer(SEEDS[index])).decode()
    )


def test_a_second_report_of_the_same_request_is_refused_until_the_first_is_unpublished(node: Node) -> None:
    full = report_of([attested(0, "aggregate"), attested(1, "aggregate"), attested(2, "aggregate")])
    dropped = report_of(
        [attested(0, "aggregate"), attested(1, "aggregate"), declined(2, Decline.UNREACHABLE)]
    )
    first = node.eval_reports.publish(full, actor="ada")
    with pytest.raises(ConflictError) as caught:
        node.eval_reports.publish(dropped, actor="ada")
    assert caught.value.field == "report" and first.hash[:16] in caught.value.message
    assert [v.hash for v in node.eval_reports.listing()] == [first.hash]
    node.eval_reports.unpublish(first.hash, actor="ada")
    assert node.eval_reports.publish(dropped, actor="ada").hash == sha256_hex(dropped)
