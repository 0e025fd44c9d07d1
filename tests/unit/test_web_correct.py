"""The correction button (issue 12): a member corrects the answer of their own chat from "My data".

Correction is a member right the API has (``PATCH /api/v1/contributions/{uid}``);
the page does the same rectification, behind the session's CSRF token, and only
for the member's own chats: anyone else's is answered like a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from coop.node.contributions.repository import get_contribution
from coop.node.contributions.submission import ContributionState
from coop.node.http.app import create_app
from coop.node.runtime import Node

from factories import contribute, make_member, make_node, process

BASE = "http://testserver.local"
HTML = {"Accept": "text/html", "Origin": BASE}
CHAT = "User: what is the capital of Australia?\nAssistant: Sydney."


class Browser:
    """One member's browser: a cookie jar signed in through the sign-in page, and the page's CSRF token."""

    def __init__(self, client: TestClient[Any], token: str) -> None:
        self.client = client
        form = client.get("/login", headers=HTML).text
        login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form)
        assert login_csrf
        signed = client.post(
            "/login",
            data={"token": token, "next": "/me", "login_csrf": login_csrf.group(1)},
            headers=HTML,
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        self.csrf = self.token_of(client.get("/me", headers=HTML).text)

    @staticmethod
    def token_of(page: str) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, "a signed-in page carries the session's CSRF token"
        return found.group(1)

    def correct(self, uid: str, correction: str, *, csrf: str | None = None) -> Any:
        data = {"correction": correction, "csrf": self.csrf if csrf is None else csrf}
        return self.client.post(f"/me/correct/{uid}", data=data, headers=HTML, follow_redirects=False)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Node, str, Browser, Browser]]:
    node = make_node(tmp_path)
    robin, robin_token = make_member(node, "robin")
    _, sam_token = make_member(node, "sam")
    uid = contribute(node, robin, text=CHAT, label="fail")
    with (
        TestClient(create_app(node, background=False), base_url=BASE) as robin_client,
        TestClient(create_app(node, background=False), base_url=BASE) as sam_client,
    ):
        yield node, uid, Browser(robin_client, robin_token), Browser(sam_client, sam_token)
    node.close()


def _correction(node: Node, uid: str) -> str | None:
    detail = node.store.read(lambda c: get_contribution(c, uid))
    assert detail is not None
    if detail.submission is not None:
        return detail.submission.correction
    assert detail.record is not None
    return detail.record.correction


def test_web_correct_a_member_corrects_their_own_chat_from_my_data(
    site: tuple[Node, str, Browser, Browser],
) -> None:
    node, uid, robin, _ = site
    my_data = robin.client.get("/me", headers=HTML).text
    assert f'href="/me/correct/{uid}"' in my_data, "My data offers the correction button"
    page = robin.client.get(f"/me/correct/{uid}", headers=HTML)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "Sydney." in page.text, "the member sees the answer they correct"
    assert f'action="/me/correct/{uid}"' in page.text and 'name="correction"' in page.text

    sent = robin.correct(uid, "Canberra.")
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == f"/me?done=corrected#c-{uid}", "not yet published: corrected in place"
    assert _correction(node, uid) == "Canberra."
    detail = node.store.read(lambda c: get_contribution(c, uid))
    assert detail is not None and detail.view.state is ContributionState.WAITING, "checked again"
    assert "Your correction is saved" in robin.client.get("/me?done=corrected", headers=HTML).text
    again = robin.client.get(f"/me/correct/{uid}", headers=HTML).text
    assert ">Canberra.</textarea>" in again, "the form shows the saved correction"


def test_web_correct_another_members_chat_is_not_found_and_stays_unchanged(
    site: tuple[Node, str, Browser, Browser],
) -> None:
    node, uid, robin, sam = site
    assert robin.client.get(f"/me/correct/{uid}", headers=HTML).status_code == 200
    assert sam.client.get(f"/me/correct/{uid}", headers=HTML).status_code == 404
    sent = sam.correct(uid, "Canberra, says sam.")
    assert sent.status_code == 404, "someone else's chat is answered like a missing one"
    assert _correction(node, uid) is None
    assert f"/me/correct/{uid}" not in sam.client.get("/me", headers=HTML).text


def test_web_correct_without_the_sessions_token_or_signed_out_changes_nothing(
    site: tuple[Node, str, Browser, Browser],
) -> None:
    node, uid, robin, _ = site
    assert robin.correct(uid, "Canberra.", csrf="").status_code == 403
    assert robin.correct(uid, "Canberra.", csrf="x" * 32).status_code == 403
    foreign = robin.client.post(
        f"/me/correct/{uid}",
        data={"correction": "Canberra.", "csrf": robin.csrf},
        headers={"Accept": "text/html", "Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert foreign.status_code == 403, "a form sent from another site"
    robin.client.cookies.clear()
    signed_out = robin.client.get(f"/me/correct/{uid}", headers=HTML, follow_redirects=False)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == f"/login?next=%2Fme%2Fcorrect%2F{uid}"
    assert _correction(node, uid) is None


def test_web_correct_the_same_answer_again_is_refused_next_to_the_field(
    site: tuple[Node, str, Browser, Browser],
) -> None:
    node, uid, robin, _ = site
    assert robin.correct(uid, "Canberra.").status_code == 303
    same = robin.correct(uid, "  Canberra. ")
    assert same.status_code == 422, same.text
    assert 'id="err-correction"' in same.text and 'aria-invalid="true"' in same.text
    assert _correction(node, uid) == "Canberra."


def test_web_correct_a_file_sent_as_the_correction_is_refused_not_saved_as_its_name(
    site: tuple[Node, str, Browser, Browser],
) -> None:
    node, uid, robin, _ = site
    before = _correction(node, uid)
    sent = robin.client.post(
        f"/me/correct/{uid}",
        data={"csrf": robin.csrf},
        files={"correction": ("a.txt", b"file content", "text/plain")},
        headers=HTML,
        follow_redirects=False,
    )
    assert sent.status_code == 422, sent.text
    assert 'id="err-correction"' in sent.text
    assert _correction(node, uid) == before


def test_web_correct_a_published_chat_becomes_a_new_record_as_the_api_does(
    site: tuple[Node, str, Browser, Browser],
) -> None:
    node, uid, robin, _ = site
    process(node)
    node.cut_release()
    sent = robin.correct(uid, "Canberra.")
    assert sent.status_code == 303, sent.text
    new_uid = sent.headers["location"].rpartition("#c-")[2]
    assert new_uid != uid, "a released chat is rectified as a new record"
    old = node.store.read(lambda c: get_contribution(c, uid))
    assert old is not None and old.view.state is ContributionState.WITHDRAWN
    assert old.view.superseded_by == new_uid
    assert _correction(node, new_uid) == "Canberra."
