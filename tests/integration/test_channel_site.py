"""The static site: built by the command line, served by a plain static file server, checked by HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coop.node.channels.publish import publish
from coop.node.contributions.rights import withdraw_contribution
from coop.node.releases.statement import verify_release
from coop.node.web.static_site import site_builder

from browsing import accessible, chromium
from factories import contribute, make_member, make_node, process
from nodeproc import coop, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, object]]]:
    node = make_node(tmp_path, name="Static Co-op")
    try:
        member, token = make_member(node, "sam")
        shown = [contribute(node, member, license="CC-BY-4.0", tags=["cooking"]) for _ in range(3)]
        hidden = contribute(node, member, license="CC0-1.0", tags=["secret-project"])
        at_home = contribute(node, member, license="CC0-1.0", scope="node")
        sharealike = contribute(node, member, license="CC-BY-SA-4.0", ai_use="train-ai=n")
        process(node)
        node.cut_release()
        root = node.data.root
        facts: dict[str, object] = {
            "shown": [*shown, sharealike],
            "hidden": hidden,
            "at_home": at_home,
            "token": token,
            "salt": node.salt.hex(),
            "public_key": node.identity.public_key,
        }
    finally:
        node.close()
    coop("embargo", "on", str(root), "--tag", "secret-project")
    out = tmp_path / "site"
    built = coop("site", "build", str(root), str(out), "--node-url", "https://coop.example.org").stdout
    assert built.startswith("built ")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield out, url, {**facts, "root": root}
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_static_site_serves_releases_browser_and_leaderboards(
    served: tuple[Path, str, dict[str, object]],
) -> None:
    out, url, facts = served
    with httpx.Client(base_url=url, follow_redirects=True, timeout=10) as web:
        home = web.get("/")
        assert home.status_code == 200 and "Static Co-op" in home.text
        assert "https://coop.example.org/contribute" in home.text  # sharing happens on the node
        assert 'action="/logout"' not in home.text
        datasets = web.get("/datasets/")
        assert "v1" in datasets.text
        v1 = web.get("/datasets/v1/")
        assert "croissant.json" in v1.text and "release.dsse.json" in v1.text
        browse = web.get("/browse/")
        assert browse.status_code == 200 and 'data-index="/browse/index.json"' in browse.text
        index = web.get("/browse/index.json").json()
        listed = {row["uid"] for row in index}
        assert listed == set(facts["shown"])  # type: ignore[arg-type]
        for uid in facts["shown"]:  # type: ignore[attr-defined]
            page = web.get(f"/browse/{uid}")
            assert page.status_code == 200 and uid in page.text
        # Embargoed and node-only records are nowhere on the site.
        assert web.get(f"/browse/{facts['hidden']}/").status_code == 404
        assert web.get(f"/browse/{facts['at_home']}/").status_code == 404
        assert "Leaderboards" in web.get("/leaderboards/").text
        assert web.get("/terms/").status_code == 200 and web.get("/faq/").status_code == 200
        # The release files, byte for byte, with the signed statement.
        data = web.get("/releases/v1/cc-by/data.jsonl")
        assert data.status_code == 200
        assert data.content == (Path(str(facts["root"])) / "releases/v1/cc-by/data.jsonl").read_bytes()
        robots = web.get("/robots.txt").text
    assert "Content-Usage: /releases/v1/cc-by-sa/ train-ai=n" in robots
    summary = verify_release(out / "releases" / "v1", facts["public_key"])  # type: ignore[arg-type]
    assert summary.name == "v1"
    # Headers for static hosts: each bucket sends its records' AI-use preference.
    headers = (out / "_headers").read_text()
    assert "/releases/v1/cc-by-sa/*\n  Content-Usage: train-ai=n" in headers
    nginx = (out / "nginx-content-usage.conf").read_text()
    assert 'location ^~ /releases/v1/cc-by-sa/ { add_header Content-Usage "train-ai=n" always; }' in nginx
    # No secret anywhere in what a static host would serve.
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert str(facts["token"]).encode() not in text, path
            assert str(facts["salt"]).encode() not in text, path


def test_site_build_refuses_a_folder_it_did_not_make_and_rebuilds_its_own(
    served: tuple[Path, str, dict[str, object]], tmp_path: Path
) -> None:
    out, _, facts = served
    root = str(facts["root"])
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"\xff\xd8")
    refused = coop("site", "build", root, str(other), check=False)
    assert refused.returncode != 0
    assert refused.stderr.startswith("coop: error:") and "not empty" in refused.stderr
    assert (other / "holiday.jpg").exists()
    # The channel form: publishing to the site rebuilds it in place.
    again = coop("publish", root, "--channel", "site", "--target", str(out), "--json")
    report = json.loads(again.stdout)
    assert report["planned"] == [] and report["already"] == ["v1"]


@pytest.mark.browser
def test_the_static_browser_searches_without_a_server_and_is_accessible(
    served: tuple[Path, str, dict[str, object]],
) -> None:
    _, url, facts = served
    with chromium() as browser:
        page = browser.new_page()
        page.goto(f"{url}/browse/")
        search = page.get_by_role("searchbox", name=re.compile("Search the chats"))
        search.fill("cooking")
        page.get_by_role("button", name="Search").click()
        status = page.locator("#static-results p")
        status.wait_for()
        assert status.inner_text() == "3 records match."
        links = page.locator("#static-results a")
        hrefs = {links.nth(i).get_attribute("href") for i in range(links.count())}
        assert hrefs == {f"/browse/{uid}/" for uid in facts["shown"][:3]}  # type: ignore[index]
        accessible(page)
        first = links.first.get_attribute("href")
        links.first.click()
        page.wait_for_url(f"{url}{first}")
        assert first.split("/")[2] in page.locator("main").inner_text()  # type: ignore[union-attr]
        accessible(page)
        page.goto(f"{url}/datasets/v1/")
        accessible(page)


def test_the_site_is_rebuilt_with_a_revised_release_at_the_next_publish(tmp_path: Path) -> None:
    node = make_node(tmp_path, name="Static Co-op")
    out = tmp_path / "site"
    try:
        member, _ = make_member(node)
        gone = contribute(node, member, license="CC-BY-4.0")
        keep = contribute(node, member, license="CC-BY-4.0")
        process(node)
        node.cut_release()
        assert [
            p.release for p in publish(node, "site", target=str(out), build_site=site_builder(node)).shipped
        ] == ["v1"]
        node.store.write(lambda c: withdraw_contribution(c, uid=gone, member=member, now=node.now()))

        report = publish(node, "site", target=str(out), build_site=site_builder(node))

        assert [p.release for p in report.shipped] == ["v1-r2"]
        lines = (out / "releases/v1/cc-by/data.jsonl").read_text().splitlines()
        assert [json.loads(line)["uid"] for line in lines] == [keep]
        summary = verify_release(out / "releases" / "v1", node.identity.public_key)
        assert summary.revision == 2 and (out / "releases/v1/revisions/r2.dsse.json").is_file()
        assert gone not in (out / "browse" / "index.json").read_text()
    finally:
        node.close()
