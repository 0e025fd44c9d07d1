"""The web pages over HTTP, against a real node process: sessions, forms, errors, admin and governance.

The browser journey (test_web_browser.py) shows a person can use the pages;
these tests pin the rules a browser does not show: what is refused, with
which problem, and that nothing is changed when it is.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from harness import add_member, bearer, code_word, init_node, pipeline_held, running
from nodeproc import NodeProcess

pytestmark = pytest.mark.integration

HTML = {"Accept": "text/html,application/xhtml+xml"}
PII_HEAVY = (
    "User: mail a@example.org, b@example.org, c@example.org, d@example.org, e@example.org "
    "and f@example.org about {word}\nAssistant: Sent."
)


@dataclass(frozen=True)
class Site:
    root: Path
    process: NodeProcess
    member: str
    other: str
    admin: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = init_node(tmp_path_factory.mktemp("pages") / "node")
    tokens = add_member(root, "robin"), add_member(root, "sam"), add_member(root, "ada", admin=True)
    with running(root) as process:
        yield Site(root, process, *tokens)


class Browser:
    """A cookie jar and the page's CSRF token, as a browser without JavaScript has them."""

    opened: ClassVar[list[httpx.Client]] = []

    def __init__(self, site: Site) -> None:
        self.http = httpx.Client(base_url=site.process.url, headers=HTML)
        Browser.opened.append(self.http)
        self.csrf = ""

    def sign_in(self, token: str) -> Browser:
        response = self.post_login({"token": token, "next": "/me"})
        assert response.status_code == 303, response.text
        self.page("/me")
        return self

    def post_login(self, data: dict[str, str]) -> httpx.Response:
        """The sign-in form as a browser sends it: from the sign-in page, with its token and Origin."""
        form = self.http.get("/login").text
        token = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
        origin = str(self.http.base_url).rstrip("/")
        return self.http.post("/login", data={"login_csrf": token, **data}, headers={"Origin": origin})

    def page(self, path: str, status: int = 200) -> str:
        response = self.http.get(path)
        assert response.status_code == status, f"{path}: {response.status_code} {response.text[:500]}"
        found = re.search(r'name="csrf" value="([^"]*)"', response.text)
        if found and found.group(1):
            self.csrf = found.group(1)
        return response.text

    def post(self, path: str, data: dict[str, str], **kwargs: object) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf, **data}, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _close_browsers() -> Iterator[None]:
    yield
    while Browser.opened:
        Browser.opened.pop().close()


def share(browser: Browser, text: str, **fields: str) -> str:
    """Share a pasted chat through the contribute form; returns its uid."""
    form = browser.page("/contribute")
    data = {
        "form_id": re.search(r'name="form_id" value="([^"]+)"', form).group(1),  # type: ignore[union-attr]
        "terms_version": re.search(r'name="terms_version" value="([^"]+)"', form).group(1),  # type: ignore[union-attr]
        "text": text,
        "label": "fail",
        "consent": "yes",
        "eval": "y",
        "step": "submit",
        **fields,
    }
    response = browser.post("/contribute", data)
    assert response.status_code == 303, response.text[:2000]
    location = response.headers["location"]
    assert location.startswith("/me?done=shared#c-")
    return location.split("#c-")[1]


def errors_on(page: str) -> list[str]:
    return re.findall(r'class="field-error"[^>]*>([^<]*)<', page)


def test_member_pages_send_a_stranger_to_sign_in_and_back(site: Site) -> None:
    browser = Browser(site)
    stranger = browser.http
    response = stranger.get("/me")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fme"

    refused = browser.post_login({"token": "coop_not-a-token", "next": "/me"})
    assert refused.status_code == 401
    assert "this token is not valid on this node" in refused.text
    assert "set-cookie" not in refused.headers

    accepted = browser.post_login({"token": site.member, "next": "//evil.example/x"})
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/me?done=signed-in", "only a local path is followed after sign-in"
    cookie = accepted.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert site.member not in cookie, "the cookie carries a session id, never the token"


def test_a_page_error_is_the_apis_problem_in_words_and_an_api_client_still_gets_json(site: Site) -> None:
    member = Browser(site).sign_in(site.member)
    page = member.page("/admin", status=403)
    assert "<h1>Not allowed</h1>" in page and "only the co-op&#39;s admins may open this page" in page
    missing = member.page("/browse/no-such-record", status=404)
    assert "no published record no-such-record" in missing
    api = httpx.get(f"{site.process.url}/browse/no-such-record")
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/problem+json")
    assert api.json()["field"] == "uid"
    api_route = member.http.get("/api/v1/nothing-here")
    assert api_route.headers["content-type"].startswith("application/problem+json"), (
        "API paths never get pages"
    )


def test_a_form_without_this_sessions_token_or_from_another_site_changes_nothing(site: Site) -> None:
    member = Browser(site).sign_in(site.member)
    uid = share(member, f"User: keep {code_word()}\nAssistant: ok")

    forged = member.http.post(f"/me/withdraw/{uid}", data={"csrf": "guessed"})
    assert forged.status_code == 403 and "out of date" in forged.text
    cross = member.post(f"/me/withdraw/{uid}", {}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and "another site" in cross.text
    assert f'id="c-{uid}"' in member.page("/me")
    mine = httpx.get(f"{site.process.url}/api/v1/contributions/{uid}", headers=bearer(site.member)).json()
    assert mine["contribution"]["state"] != "withdrawn"


def test_a_link_with_url_parameters_fills_in_the_form(site: Site) -> None:
    member = Browser(site).sign_in(site.member)
    page = member.page(
        "/contribute?label=fail&license=CC0-1.0&scope=node&tags=tax,law&language=id&eval=n&text=User%3A+hi"
    )
    assert re.search(r'id="label-fail" name="label" value="fail" checked', page)
    assert re.search(r'name="license" value="CC0-1.0" checked', page)
    assert re.search(r'id="scope-node" name="scope" value="node" checked', page)
    assert 'name="tags" type="text" value="tax,law"' in page
    assert 'value="id"' in page
    assert re.search(r'id="eval" name="eval" value="y"\s*>', page), "eval=n leaves the box unticked"
    assert ">User: hi</textarea>" in page


def test_the_form_shows_each_problem_by_its_field_and_keeps_what_was_typed(site: Site) -> None:
    member = Browser(site).sign_in(site.member)
    form = member.page("/contribute")
    form_id = re.search(r'name="form_id" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    base = {
        "form_id": form_id,
        "text": "User: hello\nAssistant: hi",
        "label": "good",
        "consent": "yes",
        "step": "submit",
    }

    for fields, field, words in [
        ({"label": ""}, "label", "good or a failure"),
        ({"consent": ""}, "consent", "consent is required"),
        ({"language": "not a language"}, "language", "BCP 47"),
        ({"tags": "ok, <bad>"}, "tags", "tag"),
        ({"text": " "}, "content", "paste the conversation"),
        ({"terms_version": "0-old"}, "terms_version", "current terms"),
    ]:
        response = member.post("/contribute", {**base, **fields})
        assert response.status_code == 422, (fields, response.status_code)
        shown = errors_on(response.text)
        assert shown and words in shown[0], (field, shown)
        assert 'href="#' in response.text.split('id="errors"')[1][:400], "the summary links to the field"
        if fields.get("language"):
            assert 'value="not a language"' in response.text, "what the member typed is kept"
    assert "hello" not in member.page("/me"), "nothing was shared by a refused form"


def test_sending_the_same_form_twice_shares_once(site: Site) -> None:
    member = Browser(site).sign_in(site.other)
    form = member.page("/contribute")
    data = {
        "form_id": re.search(r'name="form_id" value="([^"]+)"', form).group(1),  # type: ignore[union-attr]
        "text": f"User: twice {code_word()}\nAssistant: once",
        "label": "good",
        "consent": "yes",
        "step": "submit",
    }
    first = member.post("/contribute", data)
    second = member.post("/contribute", data)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert member.page("/me").count('<tr id="c-') == 1
    changed = member.post("/contribute", {**data, "label": "fail"})
    assert changed.status_code == 409, "the same form sent with other choices is a conflict, not a new share"


def test_an_admin_reviews_a_held_chat_with_its_personal_data_highlighted(site: Site) -> None:
    member = Browser(site).sign_in(site.member)
    admin = Browser(site).sign_in(site.admin)
    uid = share(member, PII_HEAVY.format(word=code_word()), label="good")
    listing = ""
    for _ in range(100):  # the pipeline holds it in the background; a bounded wait
        listing = admin.page("/admin")
        if f'id="q-{uid}"' in listing:
            break
        time.sleep(0.1)
    assert f'id="q-{uid}"' in listing and "6 pieces of personal data" in listing
    review = admin.page(f"/admin/review/{uid}")
    assert review.count('<mark title="will become [EMAIL]">') == 6
    assert "a@example.org" in review, "the admin sees what will be replaced"

    bad = admin.post(f"/admin/review/{uid}", {"decision": "publish-anyway"})
    assert bad.status_code == 422 and "decision" in bad.text
    decided = admin.post(f"/admin/review/{uid}", {"decision": "release"})
    assert decided.status_code == 303
    state = httpx.get(f"{site.process.url}/api/v1/contributions/{uid}", headers=bearer(site.member)).json()
    assert state["contribution"]["state"] == "accepted"
    assert state["contribution"]["decided_by"] == "ada"
    assert "a@example.org" not in str(state["record"]) and "[EMAIL]" in str(state["record"])
    assert "quarantine.release" in admin.page("/admin")


def test_the_waiting_room_is_listed_and_processed_on_the_admins_request(tmp_path: Path) -> None:
    root = init_node(tmp_path / "node")
    member_token, admin_token = add_member(root, "robin"), add_member(root, "ada", admin=True)
    with pipeline_held(root), running(root) as process:
        # The test holds the pipeline lock: nothing moves until the admin asks.
        site = Site(root, process, member_token, member_token, admin_token)
        uid = share(Browser(site).sign_in(member_token), f"User: wait {code_word()}\nAssistant: ok")
        admin = Browser(site).sign_in(admin_token)
        assert f'id="w-{uid}"' in admin.page("/admin")
        assert admin.post("/admin/process", {}).headers["location"] == "/admin?done=processed#waiting"
        after = admin.page("/admin?done=processed")
        assert f'id="w-{uid}"' not in after and "The waiting room was processed." in after


def test_a_change_that_needs_a_vote_is_proposed_and_decided_on_the_governance_page(site: Site) -> None:
    admin = Browser(site).sign_in(site.admin)
    refused = admin.post("/governance/proposals", {"change": "defaults.license:CC0-1.0", "reason": ""})
    assert refused.status_code == 422 and "say why" in refused.text
    unknown = admin.post("/governance/proposals", {"change": "rules:anything", "reason": "x"})
    assert unknown.status_code == 422

    opened = admin.post(
        "/governance/proposals", {"change": "defaults.license:CC0-1.0", "reason": "Simpler reuse"}
    )
    assert opened.status_code == 303
    page = admin.page("/governance")
    proposal = int(re.findall(r'id="p(\d+)"', page)[0])
    assert "Simpler reuse" in page
    electorate = int(re.search(rf'id="p{proposal}".*?of (\d+) members', page, re.S).group(1))  # type: ignore[union-attr]
    voters = [site.admin, site.member, site.other][: electorate // 2 + 1]
    for token in voters:
        voter = Browser(site).sign_in(token)
        voter.page("/governance")
        assert voter.post(f"/governance/proposals/{proposal}/vote", {"choice": "yes"}).status_code == 303
    again = Browser(site).sign_in(site.admin)
    again.page("/governance")
    twice = again.post(f"/governance/proposals/{proposal}/vote", {"choice": "no"})
    assert twice.status_code == 409, "one vote per member"
    settings = httpx.get(f"{site.process.url}/api/v1/governance/settings").json()
    assert settings["settings"]["defaults"]["license"] == "CC0-1.0"
    assert settings["via"] == f"proposal {proposal}"
    assert re.search(r"CC0-1.0.*?proposal " + str(proposal), again.page("/governance"), re.S)


def test_admins_post_bounties_and_progress_follows_contributions(site: Site) -> None:
    admin = Browser(site).sign_in(site.admin)
    admin.page("/admin")
    bad = admin.post("/admin/bounties", {"title": "Fails in Indonesian", "target": "lots"})
    assert bad.status_code == 422 and "whole number" in bad.text
    bad_language = admin.post("/admin/bounties", {"title": "x", "target": "3", "language": "Bahasa!"})
    assert bad_language.status_code == 422 and "language tag" in bad_language.text
    tag = code_word("tag")
    assert (
        admin.post(
            "/admin/bounties", {"title": "Tax fails", "target": "2", "label": "fail", "tag": tag}
        ).status_code
        == 303
    )

    member = Browser(site).sign_in(site.member)
    share(member, f"User: tax {code_word()}\nAssistant: wrong", tags=tag)
    board = ""
    for _ in range(100):  # the pipeline accepts it in the background; a bounded wait
        board = admin.page("/bounties")
        if "1 of 2 (50%)" in board:
            break
        time.sleep(0.1)
    assert "1 of 2 (50%)" in board
    assert f"tags={tag}" in board, "the bounty links to a pre-filled contribute form"


def test_my_data_downloads_only_my_contributions_and_signing_out_ends_the_session(site: Site) -> None:
    robin = Browser(site).sign_in(site.member)
    sam = Browser(site).sign_in(site.other)
    mine = share(robin, f"User: robin {code_word()}\nAssistant: ok")
    theirs = share(sam, f"User: sam {code_word()}\nAssistant: ok")

    export = robin.http.get("/me/export.jsonl")
    assert export.status_code == 200 and export.headers["content-type"].startswith("application/jsonl")
    assert mine in export.text and theirs not in export.text
    assert "not yours" not in robin.page(f"/me/withdraw/{theirs}", status=404)

    robin.page("/me")
    assert robin.post("/logout", {}).status_code == 303
    assert robin.http.get("/me").status_code == 303, "the old cookie no longer signs in"


def test_the_live_preview_needs_the_session_and_its_token(site: Site) -> None:
    member = Browser(site).sign_in(site.member)
    body = '{"text": "🙂 mail x@example.org"}'
    no_token = member.http.post("/contribute/preview", content=body, headers={"Accept": "*/*"})
    assert no_token.status_code == 403
    assert no_token.headers["content-type"].startswith("application/problem+json")
    ok = member.http.post(
        "/contribute/preview", content=body, headers={"Accept": "*/*", "X-CSRF-Token": member.csrf}
    )
    assert ok.status_code == 200
    (hit,) = ok.json()["hits"]
    assert (hit["start"], hit["end"], hit["type"]) == (8, 21, "email"), "offsets in UTF-16 units"


def test_sharing_from_an_uploaded_export_erases_the_upload(site: Site) -> None:
    """The raw export (every chat in it, unredacted) is kept only until the member shares from it."""
    browser = Browser(site).sign_in(site.member)
    form = browser.page("/contribute")
    export = json.dumps(
        [
            {
                "id": "c1",
                "title": "Rent",
                "chat": {
                    "models": ["m"],
                    "messages": [
                        {"role": "user", "content": "Mail zq-upload-marker@example.org about rent?"},
                        {"role": "assistant", "content": "Yes, write to them today."},
                    ],
                },
            }
        ]
    )
    fields = {
        "form_id": re.search(r'name="form_id" value="([^"]+)"', form).group(1),  # type: ignore[union-attr]
        "terms_version": re.search(r'name="terms_version" value="([^"]+)"', form).group(1),  # type: ignore[union-attr]
        "label": "good",
        "consent": "yes",
        "eval": "y",
    }
    page = browser.post(
        "/contribute",
        {**fields, "step": "upload"},
        files={"export": ("chat.json", export, "application/json")},
    )
    assert page.status_code == 200, page.text[:500]
    upload = re.search(r'name="upload" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    with closing(sqlite3.connect(f"file:{site.root / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT count(*) FROM web_uploads WHERE id = ?", (upload,)).fetchone()[0] == 1
    shared = browser.post("/contribute", {**fields, "upload": upload, "chat_id": "c1", "step": "submit"})
    assert shared.status_code == 303, shared.text[:1000]
    with closing(sqlite3.connect(f"file:{site.root / 'coop.sqlite3'}?mode=ro", uri=True)) as conn:
        assert conn.execute("SELECT count(*) FROM web_uploads").fetchone()[0] == 0


def test_my_data_says_where_an_accepted_record_goes_by_its_scope(site: Site) -> None:
    browser = Browser(site).sign_in(site.member)
    uids = {
        scope: share(
            browser, f"User: where does a {scope} record go?\nAssistant: As its scope says.", scope=scope
        )
        for scope in ("node", "federation")
    }
    words = {"node": "Accepted: stays on this node", "federation": "Accepted: to partner co-ops once"}
    deadline = time.monotonic() + 30
    while True:
        page = browser.page("/me")
        rows = {scope: page.split(f'id="c-{uid}"', 1)[1].split("</tr>", 1)[0] for scope, uid in uids.items()}
        if all(words[scope] in row for scope, row in rows.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.3)  # the node processes the waiting room every few seconds
    for scope, row in rows.items():
        assert words[scope] in row, (scope, row)
        assert "in the next release" not in row


def test_the_contribute_page_says_what_travels_where_what_is_kept_and_what_withdrawing_does(
    site: Site,
) -> None:
    page = Browser(site).sign_in(site.member).page("/contribute")
    for words in (
        "co-ops this co-op has pinned as its peers",  # federation scope
        "never publish it",
        "No name and no identifier travel with the record",  # anonymous
        "links the records under this pseudonym",  # pseudonymous
        "is kept only until it is checked",  # raw text
        "kept until you withdraw it",
        "takes it out of every release this co-op serves",
        "cannot be called back",
    ):
        assert words in page, words
