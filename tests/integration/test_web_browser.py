"""The web front in a real browser: Debian's Chromium, headless, driven by Playwright.

One member's whole journey, against a real node process: share a chat from an
Open WebUI export after seeing what the redactor replaces -> find it in My data
-> an admin processes and releases it -> anyone finds it in the public browser
and on the leaderboard -> the member withdraws it -> the next release leaves it
out.  Each page is checked with axe-core for serious accessibility problems and
saved as a screenshot (test artifacts, in ``$COOP_ARTIFACTS`` or
``build/screenshots``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coop.governance import public_key
from coop.node.cli import main

from browsing import accessible, chromium
from harness import add_member, init_node, running
from nodeproc import NodeProcess

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
EXPORT = REPO / "samples" / "openwebui-export.json"
LANDLORD_CHAT = "Email to landlord about a leaking radiator"
LANDLORD_EMAIL = "tom.baker@example.com"
ARTIFACTS = Path(os.environ.get("COOP_ARTIFACTS", REPO / "build" / "screenshots"))
PUBLIC_PAGES = (
    "/",
    "/datasets",
    "/browse",
    "/leaderboards",
    "/bounties",
    "/federation",
    "/federation/actions",
    "/governance",
    "/access",
    "/terms",
    "/faq",
)


@dataclass(frozen=True)
class Site:
    process: NodeProcess
    member_token: str
    admin_token: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    # The landlord chat names people, e-mails and phones 7 times in all: above the default
    # threshold of 5 it would wait in quarantine for an admin; this journey shares and withdraws.
    root = init_node(tmp_path_factory.mktemp("web") / "node", pipeline={"quarantine_pii_threshold": 10})
    member = add_member(root, "robin")
    admin = add_member(root, "ada", admin=True)
    with running(root) as process:
        yield Site(process, member, admin)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def shoot(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def sign_in(page: Any, site: Site, token: str, start: str) -> None:
    page.goto(f"{site.process.url}{start}")
    assert "/login" in page.url, "a page for members sends a stranger to sign in"
    page.get_by_label("Member token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(start.split("?")[0])))


def confirm_dialogs(page: Any) -> None:
    page.on("dialog", lambda dialog: dialog.accept())


def release_summary(site: Site, name: str) -> dict[str, Any]:
    response = httpx.get(f"{site.process.url}/releases/{name}")
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()
    return summary


def release_text(site: Site, summary: dict[str, Any], *, tombstones: bool = False) -> str:
    """The record files of a release (or its list of withdrawn records), as text."""
    out = []
    for entry in summary["files"]:
        if entry["path"].endswith(".jsonl") and ("tombstone" in entry["path"]) == tombstones:
            out.append(httpx.get(f"{site.process.url}/releases/{summary['name']}/{entry['path']}").text)
    return "\n".join(out)


def test_a_member_shares_from_an_export_and_withdraws_it_again(site: Site, browser: Any, shots: Path) -> None:
    member = browser.new_context(viewport={"width": 1200, "height": 900})
    admin = browser.new_context(viewport={"width": 1200, "height": 900})
    public = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        me = member.new_page()
        confirm_dialogs(me)
        sign_in(me, site, site.member_token, "/contribute")
        accessible(me)
        shoot(me, shots, "contribute")

        # Upload the export: three chats, the member picks one.
        me.set_input_files("#export", str(EXPORT))
        me.get_by_role("button", name="Upload the export").click()
        picker = me.get_by_role("group", name=re.compile("Your export holds 3 chats"))
        picker.wait_for()
        accessible(me)
        shoot(me, shots, "contribute-pick")
        me.get_by_label(LANDLORD_CHAT).check()
        me.get_by_role("button", name="Use this chat").click()

        # The preview shows what the redactor will replace, before anything is sent.
        preview = me.locator("#preview")
        preview.wait_for()
        marked = preview.locator("mark")
        assert LANDLORD_EMAIL in marked.all_inner_texts()[0] or any(
            LANDLORD_EMAIL in t for t in marked.all_inner_texts()
        )
        assert "[EMAIL]" in (marked.first.get_attribute("title") or "") or any(
            "[EMAIL]" in (m.get_attribute("title") or "") for m in marked.all()
        )
        assert re.search(r"\d+ pieces? of personal data will be replaced", preview.inner_text())
        shoot(me, shots, "contribute-preview")

        me.get_by_label("Fail", exact=True).check()
        me.get_by_label(re.compile(r"^CC BY 4\.0")).check()
        me.get_by_label(re.compile(r"^No AI training \(train-ai=n\)")).check()
        me.get_by_label(re.compile(r"^By my name")).check()
        me.get_by_label("Language (e.g. en, id, pt-BR; optional)").fill("en")
        # Without consent the page says so next to the box, and keeps everything typed.
        me.get_by_role("button", name="Share it").click()
        alert = me.get_by_role("alert")
        alert.wait_for()
        assert "consent" in alert.inner_text().lower()
        assert me.locator("#language").input_value() == "en"
        accessible(me)
        shoot(me, shots, "contribute-error")
        me.get_by_label(re.compile("I agree to the co-op")).check()
        me.get_by_role("button", name="Share it").click()
        me.wait_for_url(re.compile(r"/me\?done=shared"))

        # My data: the contribution with its state.
        row = me.locator("tbody tr").first
        uid = (row.get_attribute("id") or "").removeprefix("c-")
        assert uid, "the contribution's row names its uid"
        assert row.locator("td.label-fail").inner_text() == "fail"
        assert row.locator("td").nth(2).inner_text() == "CC-BY-4.0"
        accessible(me)
        shoot(me, shots, "my-data")

        # The admin processes the waiting room and cuts a release.
        desk = admin.new_page()
        confirm_dialogs(desk)
        sign_in(desk, site, site.admin_token, "/admin")
        desk.get_by_role("button", name="Process the waiting room now").click()
        desk.wait_for_url(re.compile(r"done=processed"))
        accessible(desk)
        shoot(desk, shots, "admin")
        desk.get_by_role("button", name="Cut a release").click()
        desk.wait_for_url(re.compile(r"done=released"))
        assert "The release is cut" in desk.get_by_role("status").inner_text()
        v1 = release_summary(site, "v1")
        assert v1["records"] == 1
        assert uid in release_text(site, v1)
        assert LANDLORD_EMAIL not in release_text(site, v1)

        me.reload()
        assert me.locator(f"#c-{uid} td.state").inner_text().startswith("Released in v1")

        # Anyone finds it in the public browser, redacted, and on the leaderboard.
        anyone = public.new_page()
        anyone.goto(f"{site.process.url}/browse")
        anyone.get_by_label("Search the chats").fill("radiator")
        anyone.get_by_label("Licence").select_option("CC-BY-4.0")
        anyone.get_by_role("button", name="Search").click()
        anyone.get_by_role("link", name=re.compile("landlord")).wait_for()
        assert "1 record found" in anyone.get_by_role("status").inner_text()
        accessible(anyone)
        shoot(anyone, shots, "browse")
        anyone.get_by_role("link", name=re.compile("landlord")).click()
        body = anyone.locator("main").inner_text()
        assert "[EMAIL]" in body and LANDLORD_EMAIL not in body
        assert "robin" in body and "CC-BY-4.0" in body
        accessible(anyone)
        shoot(anyone, shots, "record")
        anyone.goto(f"{site.process.url}/leaderboards")
        contributors = anyone.get_by_role("region", name="Contributors").inner_text()
        assert re.search(r"robin\s+0\s+1", contributors), contributors
        assert "llama" in anyone.get_by_role("region", name="Models by failures").inner_text()
        accessible(anyone)
        shoot(anyone, shots, "leaderboards")
        anyone.goto(f"{site.process.url}/datasets/v1")
        assert "train-ai=n" in anyone.locator("main").inner_text()
        accessible(anyone)
        shoot(anyone, shots, "dataset")

        # The member withdraws it: the page says plainly what that can and cannot undo.
        me.get_by_role("link", name=re.compile(f"Withdraw {uid}")).click()
        text = me.locator("main").inner_text()
        assert "future release" in text and "cannot be recalled" in text
        accessible(me)
        shoot(me, shots, "withdraw")
        me.get_by_role("button", name="Yes, withdraw it").click()
        me.wait_for_url(re.compile(r"done=withdrawn"))
        assert me.locator(f"#c-{uid} td.state").inner_text().startswith("Withdrawn")

        # Gone from the browser at once; the next release leaves it out and lists it as withdrawn.
        anyone.goto(f"{site.process.url}/browse?q=radiator")
        assert "0 records found" in anyone.get_by_role("status").inner_text()
        desk.goto(f"{site.process.url}/admin")
        desk.get_by_role("button", name="Cut a release").click()
        desk.wait_for_url(re.compile(r"done=released"))
        v2 = release_summary(site, "v2")
        assert v2["records"] == 0 and v2["tombstones"] == 1
        assert uid not in release_text(site, v2)
        assert uid in release_text(site, v2, tombstones=True)
        anyone.goto(f"{site.process.url}/datasets/v2")
        assert "1 earlier records are listed as withdrawn" in anyone.locator("main").inner_text()
    finally:
        for context in (member, admin, public):
            context.close()


def test_pasting_shows_the_live_preview_and_every_public_page_reads_without_javascript(
    site: Site, browser: Any, shots: Path
) -> None:
    with_js = browser.new_context()
    without_js = browser.new_context(java_script_enabled=False)
    try:
        page = with_js.new_page()
        sign_in(page, site, site.member_token, "/contribute")
        page.get_by_label("Paste it here").fill(
            "User: 🙂🙂 Write to me at ana.silva@example.org, card 4111 1111 1111 1111\nAssistant: Done."
        )
        live = page.locator("#live-preview mark")
        live.first.wait_for()
        # The marks line up after emoji (JavaScript counts UTF-16 units where Python counts code points).
        assert sorted(live.all_inner_texts()) == sorted(
            ["ana.silva@example.orgemail", "4111 1111 1111 1111card_number"]
        )

        plain = without_js.new_page()
        for path in PUBLIC_PAGES:
            page.goto(f"{site.process.url}{path}")
            accessible(page)  # axe runs as a script: in the page that has JavaScript
            plain.goto(f"{site.process.url}{path}")
            assert plain.locator("h1").count() == 1, path
            assert plain.locator("main").inner_text().strip(), path
        # Without JavaScript a member still shares a chat: the form posts on its own.
        sign_in(plain, site, site.member_token, "/contribute")
        plain.get_by_label("Paste it here").fill("User: What is 2 + 2?\nAssistant: 5.")
        plain.get_by_role("button", name="Preview what will be published").click()
        assert "nothing will be replaced" in plain.locator("#preview").inner_text().lower()
        plain.get_by_label("Fail", exact=True).check()
        plain.get_by_label(re.compile("I agree to the co-op")).check()
        plain.get_by_role("button", name="Share it").click()
        plain.wait_for_url(re.compile(r"/me\?done=shared"))
        # The keyboard reaches the skip link first, and it leads to the page's content.
        page.goto(f"{site.process.url}/browse")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.url.endswith("#main")
    finally:
        with_js.close()
        without_js.close()


def test_the_admin_flips_the_embargo_and_sees_who_did_it(site: Site, browser: Any, shots: Path) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, site, site.admin_token, "/admin")
        switches = page.locator("#switches")
        switches.get_by_label("On").first.check()
        switches.get_by_role("button", name="Flip now").first.click()
        page.wait_for_url(re.compile(r"done=embargo"))
        assert page.locator("#embargo-state").inner_text() == "on for the whole co-op"
        assert "Last changed by ada" in page.locator("#switches .card").first.inner_text()
        state = httpx.get(f"{site.process.url}/api/v1/governance/state").json()
        assert state["embargo"]["on"] is True
        shoot(page, shots, "admin-embargo")
        page.goto(f"{site.process.url}/governance")
        embargo_row = page.locator("tr", has=page.locator("th", has_text=re.compile(r"^Embargo$")))
        assert re.search(r"^Embargo\s+on \(whole co-op\)\s+ada, ", embargo_row.inner_text()), (
            embargo_row.inner_text()
        )
        shoot(page, shots, "governance")
        page.goto(f"{site.process.url}/admin")
        page.locator("#switches").get_by_label("Off").first.check()
        page.locator("#switches").get_by_role("button", name="Flip now").first.click()
        page.wait_for_url(re.compile(r"done=embargo"))
        assert page.locator("#embargo-state").inner_text() == "off"
    finally:
        context.close()


def test_the_admin_proposes_a_joint_action_and_signs_its_end(site: Site, browser: Any, shots: Path) -> None:
    """The joint actions page with its admin forms: propose (this co-op alone, so it binds at once),
    see it in force and bound here, then sign its end."""
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, site, site.admin_token, "/admin")
        page.goto(f"{site.process.url}/federation/actions")
        accessible(page)
        form = page.locator("#propose")
        form.get_by_label("Embargo", exact=True).check()
        form.get_by_label("Tags, separated by commas").fill("joint-browser")
        form.get_by_label("Review date (give an end, a review date, or both)").fill(_in_days(30))
        form.get_by_label("How many of them must sign").fill("1")
        form.get_by_label("Why").fill("A browser test holds back one tag")
        form.get_by_role("button", name=re.compile("Propose it")).click()
        page.wait_for_url(re.compile(r"done=joint-proposed"))
        card = page.locator("#active .card").first
        assert "bound: this co-op signed" in card.inner_text()
        assert "records already released stay released" in page.locator("main").inner_text()
        accessible(page)
        shoot(page, shots, "joint-actions")
        actions = httpx.get(f"{site.process.url}/api/v1/federation/actions").json()["actions"]
        assert [a["status"] for a in actions] == ["active"] and actions[0]["bound_here"] is True
        card.get_by_role("button", name=re.compile("Sign its end")).click()
        page.wait_for_url(re.compile(r"done=joint-ended"))
        assert "not bound: the action is ended" in page.locator("#past .card").first.inner_text()
    finally:
        context.close()


def _in_days(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


def test_screenshots_for_the_readme_are_kept(shots: Path) -> None:
    """The README shows the contribute page and the public browser as this run drew them."""
    docs = REPO / "docs" / "screenshots"
    for name in ("contribute-preview", "browse"):
        made = shots / f"{name}.png"
        if not made.exists():
            pytest.skip("the browser journey did not run")
        assert made.stat().st_size > 10_000
        if os.environ.get("COOP_UPDATE_SCREENSHOTS") == "1":
            docs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made, docs / f"{name}.png")
        assert (docs / f"{name}.png").exists(), "run with COOP_UPDATE_SCREENSHOTS=1 once to add it"


def _published_report(node_ids: list[tuple[bytes, str, str]]) -> bytes:
    """A signed eval report over co-ops (seed, name, publication) the test makes up."""
    import secrets as random_bytes
    import time

    from coop.eval import (
        Attestation,
        Filters,
        NodeAnswer,
        Noise,
        build_label_agreement_model,
        build_report,
        build_request,
        get_evaluator,
        open_request,
        seal_attestation,
    )
    from coop.governance import public_key
    from coop.governance.signing import Signer

    now = int(time.time())
    model = build_label_agreement_model([("thanks", True), ("wrong", False)] * 4, dim=256, seed=1)
    evaluator = get_evaluator("label-agreement")
    schema = evaluator.statistic_sensitivity()
    requester = Signer(random_bytes.token_bytes(32))
    request = build_request(
        signer=requester,
        task="label-agreement",
        model_name="browser-model.npz",
        artifact=model,
        targets=[public_key(seed).hex() for seed, _, _ in node_ids],
        purpose="a browser check",
        filters=Filters(),
        now=now,
        lifetime=3600,
        nonce=random_bytes.token_hex(8),
    )
    verified = open_request(request, now=now, artifact=model)
    answers = []
    for index, (seed, name, publication) in enumerate(node_ids):
        n = 40 + index
        stats = dict.fromkeys(schema, 0)
        stats.update(n=n, tp=n // 2, tn=n // 4, log_loss_nano=n * 10**8, hist_fail_100=n // 2)
        stats["hist_good_900"] = n - n // 2
        attestation = Attestation(
            node_id=public_key(seed).hex(),
            request_hash=verified.hash,
            task="label-agreement",
            model_sha256=verified.request.model_sha256,
            records=n,
            statistics=stats,
            noise=Noise(),
            issued_at=now,
            coop=name,
            publication=publication,
        )
        sealed = seal_attestation(attestation, Signer(seed)).decode()
        answers.append(NodeAnswer(node_id=attestation.node_id, attestation=sealed, coop=name))
    return build_report(
        request_envelope=request,
        request_hash=verified.hash,
        task="label-agreement",
        model_sha256=verified.request.model_sha256,
        purpose="a browser check",
        answers=answers,
        finalize=evaluator.finalize,
        schema=schema,
        created_at=now,
        signer=requester,
    )


def test_published_eval_reports_read_on_the_leaderboard(site: Site, browser: Any, shots: Path) -> None:
    admin = {"Authorization": f"Bearer {site.admin_token}", "Content-Type": "application/json"}
    for coops in (
        [(bytes([21]) * 32, "Alder co-op", "named"), (bytes([22]) * 32, "Birch co-op", "named")],
        [(bytes([23]) * 32, "Cedar co-op", "named"), (bytes([24]) * 32, "Hidden co-op", "none")],
    ):
        for seed, name, _ in coops:
            # A co-op shows only numbers signed by keys it knows: its own and its pinned peers'.
            pin = ["peers", "add", str(site.process.root), f"http://127.0.0.{seed[0]}:9"]
            assert main([*pin, "--key", public_key(seed).hex(), "--name", name, "--quiet"]) == 0
        published = httpx.post(
            f"{site.process.url}/api/v1/admin/eval/reports", content=_published_report(coops), headers=admin
        )
        assert published.status_code == 201, published.text
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{site.process.url}/leaderboards")
        section = page.get_by_role("region", name="Model evaluations").inner_text()
        assert "browser-model.npz" in section and "Alder co-op" in section and "Cedar co-op" in section
        assert "Hidden co-op" not in section and "a co-op (not named)" in section
        assert "aggregate withheld: not every co-op consents" in section
        assert page.get_by_role("link", name="Download the signed report").count() == 1
        accessible(page)
        shoot(page, shots, "leaderboards-evaluations")
    finally:
        context.close()
