"""`make demo`: three co-ops on 127.0.0.1 share chats, release them, and federate by gossip.

Everything runs through the real command line and HTTP API, as co-ops would
use them.  Set KEEP=1 to leave the nodes serving at the end.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import tomli_w

from flower_federation import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo-data"
SAMPLES = ROOT / "samples"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
COOPS = {"tax": "Tax Law Co-op", "care": "Nurses' Co-op", "farm": "Farmers' Co-op"}


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def coop(*args: str, live: bool = False) -> str:
    """Run `coop ARGS`; its output, or exit the demo with its error. ``live`` lets its progress
    lines (printed on a terminal) through as they happen."""
    result = subprocess.run(
        [sys.executable, "-m", "coop.node.cli", *args],
        stdout=subprocess.PIPE,
        stderr=None if live else subprocess.PIPE,
        text=True,
        env=ENV,
        check=False,
    )
    if result.returncode != 0:
        print((result.stderr or "").rstrip(), file=sys.stderr)
        raise SystemExit(f"demo: `coop {args[0]}` failed (exit {result.returncode})")
    return result.stdout.strip()


def configure(root: Path, port: int) -> None:
    path = root / "node.toml"
    config = tomllib.loads(path.read_text())
    config["node"]["public_url"] = f"http://127.0.0.1:{port}"
    config["federation"] = {"interval_seconds": 1.0}
    config["pipeline"] = {"interval_seconds": 1.0}
    path.write_text(tomli_w.dumps(config))


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: a node exited early; see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"demo: a node did not start; see {log}")


def share(url: str, token: str, name: str, label: str, *extra: str) -> list[str]:
    out = coop(
        "contribute",
        str(SAMPLES / name),
        "--node",
        url,
        "--token",
        token,
        "--label",
        label,
        "--consent",
        *extra,
    )
    return [line.split()[0] for line in out.splitlines()]


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    roots = {key: DEMO / key for key in COOPS}
    ports = {key: free_port() for key in COOPS}
    urls = {key: f"http://127.0.0.1:{port}" for key, port in ports.items()}

    say("1. Three co-ops set up their nodes and pin each other's keys")
    ids = {}
    for key, name in COOPS.items():
        ids[key] = coop("init", str(roots[key]), "--name", name)
        configure(roots[key], ports[key])
        print(f"{name:<16} node id {ids[key][:16]}...  {urls[key]}")
    for key in COOPS:
        for other in COOPS:
            if other != key:
                coop("peers", "add", str(roots[key]), urls[other], "--key", ids[other])
    admins = {key: coop("member", "add", str(roots[key]), "ada", "--admin") for key in COOPS}
    member = coop("member", "add", str(roots["tax"]), "ben")

    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for key in COOPS:
            log = DEMO / f"{key}.log"
            procs[key] = subprocess.Popen(
                [sys.executable, "-m", "coop.node.cli", "serve", str(roots[key]), "--port", str(ports[key])],
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                env=ENV,
                start_new_session=True,
            )
        for key in COOPS:
            wait_ready(urls[key], procs[key], DEMO / f"{key}.log")
        print("all three serving (logs in demo-data/*.log)")

        say("2. Members share chats: good and fail, all three licences, an Open WebUI export")
        tax, care, farm = urls["tax"], urls["care"], urls["farm"]
        shares = [
            (tax, admins["tax"], "openwebui-export.json", "good", ["--license", "CC-BY-4.0", "--tag", "open-webui"]),
            (tax, admins["tax"], "openwebui-chat.json", "fail", ["--license", "CC-BY-SA-4.0", "--correction", "See the fix."]),
            (tax, member, "openwebui-export.ndjson", "good", ["--license", "CC0-1.0", "--ai-use", "train-ai=n;exceptions=cc-cr, search=y"]),
            (tax, member, "good-chat.txt", "good", ["--license", "CC0-1.0", "--attribution", "username"]),
            (tax, member, "fail-chat.txt", "fail", ["--license", "CC-BY-SA-4.0", "--ai-use", "train-genai=n", "--note", "wrong sum"]),
            (tax, member, "messages.json", "good", ["--scope", "node"]),
            (tax, member, "quarantine-chat.txt", "fail", ["--license", "CC-BY-4.0"]),
            (care, admins["care"], "messages.json", "good", ["--license", "CC-BY-4.0", "--scope", "federation"]),
            (farm, admins["farm"], "good-chat.txt", "good", ["--license", "CC0-1.0"]),
        ]  # fmt: skip
        shared: dict[str, list[str]] = {}
        for url, token, name, label, extra in shares:
            uids = share(url, token, name, label, *extra)
            shared.setdefault(name, []).extend(uids)
            where = next(COOPS[k] for k, u in urls.items() if u == url)
            print(f"{where:<16} {name} ({label}, {' '.join(extra[:2])}): {len(uids)} contribution(s)")

        say("3. The pipelines redact personal data and quarantine what needs review")
        for key in COOPS:
            httpx.post(
                f"{urls[key]}/api/v1/admin/process", headers={"Authorization": f"Bearer {admins[key]}"}
            )
        for line in coop("quarantine", "list", str(roots["tax"])).splitlines():
            print(f"quarantined at {COOPS['tax']}: {line}")

        say("4. Each co-op cuts a release; each release produces a signed manifest")
        for key in COOPS:
            release = httpx.post(
                f"{urls[key]}/api/v1/admin/releases", headers={"Authorization": f"Bearer {admins[key]}"}
            ).json()
            print(f"{COOPS[key]:<16} {release['name']}: {release['records']} public records")

        say("5. Gossip: each node pulls the others' manifests and mirrors what it may")
        expected = _expected_mirrors(urls, roots, ids)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _converged(urls, ids, expected):
            time.sleep(0.5)
        for key in COOPS:
            origins = httpx.get(f"{urls[key]}/api/v1/federation/origins").json()
            held = ", ".join(
                f"{o['coop']} seq {o['seq']} ({o['mirrored']} mirrored)" for o in origins if not o["self"]
            )
            print(f"{COOPS[key]:<16} holds: {held}")
        print(
            "node-scope records stayed home; federation-scope ones were mirrored but never released publicly"
        )
        federated = coop("release", str(roots["farm"]), "--federated")
        print(f"{COOPS['farm']} cut a federated release: demo-data/farm/releases/{federated}")

        say("6. A model builder asks the federation to evaluate a model (Flower, simulation engine)")
        for key in ("tax", "care"):
            coop("settings", "set", str(roots[key]), "eval_policy.min_records=1")
        builder = DEMO / "builder"
        builder.mkdir()
        coop("eval", "keygen", str(builder / "requester.key"))
        model = builder / "reward-model.npz"
        model.write_bytes(_demo_model())
        args = ["eval", "request", "--key", str(builder / "requester.key"), "--task", "label-agreement"]
        args += [
            "--model",
            str(model),
            "--purpose",
            "Does our reward model agree with co-op members' labels?",
        ]
        args += ["--out", str(builder / "report.json"), "--timeout", "120"]
        for key in COOPS:
            args += [
                "--target",
                ids[key],
                "--local-node",
                f"{urls[key]},{roots[key] / 'keys' / 'eval.token'}",
            ]
        print(coop(*args))
        print(coop("eval", "verify", str(builder / "report.json")))

        say("7. Publishing: a git repository and a static site (the Hugging Face channel needs the network)")
        channels = DEMO / "published"
        channels.mkdir()
        bare = channels / "tax-chats.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True, timeout=60)
        print(coop("publish", str(roots["tax"]), "--channel", "git", "--target", str(bare)).rstrip())
        print(
            coop("site", "build", str(roots["tax"]), str(channels / "tax-site"), "--node-url", tax).rstrip()
        )

        say("8. A language model evaluated across the co-ops, its signed result on a leaderboard")
        lm_report = _lm_evaluation(builder, roots, urls, ids)
        print(coop("eval", "publish", str(roots["tax"]), str(lm_report)))
        published = httpx.get(f"{tax}/api/v1/eval/reports").json()
        for view in published:
            print(f"{view['model_name']} ({view['task']}), published on {tax}/leaderboards:")
            for row in view["coops"]:
                metrics = row.get("metrics") or {}
                shown = ", ".join(
                    f"{k} {metrics[k]}" for k in ("preference_accuracy", "perplexity") if k in metrics
                )
                state = (
                    f"{row['records']} records, {shown}"
                    if row["answered"] and metrics
                    else row.get("declined") or "answered"
                )
                print(f"  {row['label']:<22} {state}")
            aggregate = view.get("aggregate_metrics")
            print(
                f"  {'all answering co-ops':<22} "
                + (
                    f"preference_accuracy {aggregate['preference_accuracy']}"
                    if aggregate
                    else view["aggregate_note"]
                )
            )
            print(f"  verify it yourself: {view['verify_hint']}")
        page = httpx.get(f"{tax}/leaderboards").text
        if not published or "Model evaluations" not in page:
            raise SystemExit("demo: the leaderboard does not show the evaluation")
        print(
            coop("site", "build", str(roots["tax"]), str(channels / "tax-site"), "--node-url", tax).rstrip()
        )

        _joint_embargo(roots, urls, ids, admins)
        _gated_grant(roots, urls, admins)
        _model_live(roots, urls, channels, highlight=shared["good-chat.txt"][0])

        say("12. Where to look")
        version_dir = roots["tax"] / "releases" / "v1"
        print(f"  dataset card     {version_dir.relative_to(ROOT)}/README.md")
        print(f"  Croissant        {version_dir.relative_to(ROOT)}/croissant.json")
        print(f"  git channel      git -C {bare.relative_to(ROOT)} log --oneline --decorate")
        print(f"  static site      python -m http.server -d {(channels / 'tax-site').relative_to(ROOT)}")
        print(f"  load a bucket    datasets.load_dataset('{version_dir.relative_to(ROOT)}', 'cc-by-sa')")
        print(f"  releases (HTTP)  {tax}/releases/v1   and {tax}/robots.txt (Content-Usage)")
        print(f"  federation       {farm}/api/v1/federation/origins")
        print(f"  metrics          {tax}/metrics  and: coop metrics {roots['tax'].relative_to(ROOT)}")
        print(f"  funnel (admin)   {tax}/admin/funnel   (public: demo-data/published/tax-site/funnel/)")
        print(f"  Atom feed        {tax}/feed.atom")
        print(f"  audit log        coop audit show {roots['tax'].relative_to(ROOT)}")
        print(f"  joint actions    {farm}/federation/actions   and: coop joint list demo-data/farm")
        print(
            f"  gated access     {tax}/access   {tax}/admin/access   and: coop access register demo-data/tax"
        )
        print(f"  API schema       {tax}/schema")
        print("  eval report      demo-data/builder/report.json (signed) and report.md")
        print(
            "  LM eval report   demo-data/builder/lm-report.json; coop eval requests --key demo-data/builder/requester.key"
        )
        print(f"  leaderboard      {tax}/leaderboards  (and demo-data/published/tax-site/leaderboards/)")
        print()
        print(coop("metrics", str(roots["tax"])))
        if os.environ.get("KEEP") == "1":
            print("\nThe nodes keep serving; Ctrl-C to stop.")
            for proc in procs.values():
                proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=15)
    print("\nThe nodes were stopped; serve one again with: coop serve demo-data/tax")
    return 0


def _model_live(roots: dict[str, Path], urls: dict[str, str], channels: Path, *, highlight: str) -> None:
    """Publication per channel: a git repository in review mode (a maintainer merges the pull
    request), a highlighted record in the Atom feed, the Bluesky posts a dry run would send, and
    the model's numbers per channel in coop metrics."""
    say("11. The record-generation model, live: review, merge, feed, microblog, metrics")
    tax = roots["tax"]
    config = tomllib.loads((tax / "node.toml").read_text())
    config.setdefault("channels", {})["git_mode"] = "review"
    (tax / "node.toml").write_text(tomli_w.dumps(config))
    reviewed = channels / "tax-reviewed.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(reviewed)], check=True, timeout=60)
    print(coop("publish", str(tax), "--channel", "git", "--target", str(reviewed)).rstrip())
    # A maintainer of the repository accepts the newest pull request: its branch becomes main.
    clone = channels / "maintainer"
    git = ["git", "-c", "advice.detachedHead=false"]
    subprocess.run(
        [*git, "clone", "--quiet", "--branch", "coop/v3", str(reviewed), str(clone)], check=True, timeout=60
    )
    subprocess.run(
        [*git, "-C", str(clone), "push", "--quiet", "origin", "HEAD:refs/heads/main"], check=True, timeout=60
    )
    print("a maintainer merged coop/v3 into main (v1 and v2 are stacked under it)")
    print(coop("publish", str(tax), "--channel", "git", "--target", str(reviewed)).rstrip())
    print(coop("highlight", str(tax), highlight).rstrip())
    atom = "{http://www.w3.org/2005/Atom}"
    feed = ElementTree.fromstring(httpx.get(f"{urls['tax']}/feed.atom").content)  # noqa: S314 (our own node)
    titles = [entry.findtext(f"{atom}title") or "" for entry in feed.findall(f"{atom}entry")]
    print(f"{urls['tax']}/feed.atom: " + "; ".join(titles[:4]))
    dry = coop("publish", str(tax), "--channel", "bluesky", "--target", "taxlaw.example", "--dry-run")
    print(dry.rstrip())
    print(
        "records whose member refuses AI use, chose not to be announced, or that are embargoed or"
        " gated are never posted"
    )


def _joint_embargo(
    roots: dict[str, Path], urls: dict[str, str], ids: dict[str, str], admins: dict[str, str]
) -> None:
    """Two co-ops join a 2-of-3 embargo on picket-line chats; the third is not bound."""
    say("9. Co-ops act together: Tax and Care join a 2-of-3 embargo on picket-line chats")
    until = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=14)).date().isoformat()
    proposed = coop(
        "joint",
        "propose",
        str(roots["tax"]),
        "--embargo",
        "--tag",
        "picket",
        "--until",
        until,
        "--threshold",
        "2",
        "--coop",
        ids["care"],
        "--coop",
        ids["farm"],
        "--json",
        "--reason",
        "No AI training on picket-line chats until the contract talks end",
    )
    action = json.loads(proposed)["action"]["id"]
    print(f"{COOPS['tax']} proposed and signed joint action {action[:12]} (1 of the 2 signatures needed)")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{urls['care']}/api/v1/federation/actions/{action}").status_code == 200:
            break
        time.sleep(0.5)
    signed = httpx.post(
        f"{urls['care']}/api/v1/federation/actions/{action}/sign",
        headers={"Authorization": f"Bearer {admins['care']}"},
    )
    signed.raise_for_status()
    print(f"{COOPS['care']} decided by its own rules (an admin may join an embargo alone) and co-signed")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        views = [httpx.get(f"{urls[k]}/api/v1/federation/actions/{action}").json() for k in COOPS]
        if all(v["status"] == "active" for v in views):
            break
        time.sleep(0.5)
    for key, view in zip(COOPS, views, strict=True):
        print(f"{COOPS[key]:<16} {view['status']}: {view['here']}")
    picket = DEMO / "picket-chat.txt"
    picket.write_text(
        "User: Draft a short note to the members about tomorrow's picket at the depot.\n\n"
        "Assistant: Dear members, we meet at the depot gate at 7:00 tomorrow. Bring water and"
        " your union card; the stewards will hand out the schedule.\n",
        encoding="utf-8",
    )
    out = coop(
        "contribute",
        str(picket),
        "--node",
        urls["tax"],
        "--token",
        admins["tax"],
        "--label",
        "good",
        "--consent",
        "--tag",
        "picket",
        "--license",
        "CC0-1.0",
    )
    uids = [line.split()[0] for line in out.splitlines()]
    httpx.post(f"{urls['tax']}/api/v1/admin/process", headers={"Authorization": f"Bearer {admins['tax']}"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [
            httpx.get(
                f"{urls['tax']}/api/v1/contributions/{uid}",
                headers={"Authorization": f"Bearer {admins['tax']}"},
            ).json()["contribution"]["state"]
            for uid in uids
        ]
        if all(state in ("accepted", "quarantined") for state in states):
            break
        time.sleep(0.5)
    release = httpx.post(
        f"{urls['tax']}/api/v1/admin/releases", headers={"Authorization": f"Bearer {admins['tax']}"}
    )
    held = httpx.get(
        f"{urls['tax']}/api/v1/contributions/{uids[0]}", headers={"Authorization": f"Bearer {admins['tax']}"}
    ).json()["contribution"]
    print(
        f"a new picket-line chat at {COOPS['tax']}: {held['state']}, not released "
        f"(release: {release.json().get('name', release.status_code)}); it reaches no peer while the action holds"
    )
    print(coop("joint", "list", str(roots["farm"])).rstrip())
    for key in ("tax", "care"):
        httpx.post(
            f"{urls[key]}/api/v1/federation/actions/{action}/end",
            headers={"Authorization": f"Bearer {admins[key]}"},
        ).raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if httpx.get(f"{urls['tax']}/api/v1/federation/actions/{action}").json()["status"] == "ended":
            break
        time.sleep(0.5)
    again = httpx.post(
        f"{urls['tax']}/api/v1/admin/releases", headers={"Authorization": f"Bearer {admins['tax']}"}
    )
    after = httpx.get(
        f"{urls['tax']}/api/v1/contributions/{uids[0]}", headers={"Authorization": f"Bearer {admins['tax']}"}
    ).json()["contribution"]
    print(
        f"Tax and Care signed its end; the next release ({again.json().get('name', again.status_code)})"
        f" admits the held chat: {after['state']}"
    )


def _gated_grant(roots: dict[str, Path], urls: dict[str, str], admins: dict[str, str]) -> None:
    """Tax gates its CC-BY-SA bucket; a model builder asks, an admin grants, the download is logged."""
    say("10. Gated access: Tax gates its CC-BY-SA-4.0 bucket; a model builder asks and is granted")
    tax = urls["tax"]
    coop("settings", "set", str(roots["tax"]), 'access.gated=["CC-BY-SA-4.0"]')
    coop(
        "settings",
        "set",
        str(roots["tax"]),
        'access.conditions=["training allowed only for open-weight models"]',
    )
    builder = coop("member", "add", str(roots["tax"]), "mia", "--role", "builder").strip()
    auth = {"Authorization": f"Bearer {builder}"}
    summary = httpx.get(f"{tax}/api/v1/releases/v1").json()
    bucket = next(b for b in summary["buckets"] if b["license"] == "CC-BY-SA-4.0")
    data = next(f for f in bucket["files"] if f["path"].endswith(".jsonl") or f["path"].endswith(".parquet"))
    public = httpx.get(f"{tax}/releases/v1/{data['path']}")
    print(f"public download of {data['path']}: {public.status_code} ({public.json().get('detail', '')})")
    asked = httpx.post(
        f"{tax}/api/v1/access/requests",
        headers=auth,
        json={
            "who": "Mia, Open Models Lab",
            "purpose": "Fine-tune an open-weight assistant on corrected failures",
            "model": "open-assistant-7b (open weights)",
            "open_weights": True,
            "buckets": ["CC-BY-SA-4.0"],
            "accept_terms": True,
        },
    )
    asked.raise_for_status()
    number = asked.json()["id"]
    print(f"mia requested access (request {number}); the terms she accepted are on {tax}/access")
    print(coop("access", "approve", str(roots["tax"]), str(number)).rstrip())
    minted = httpx.post(
        f"{tax}/api/v1/access/requests/{number}/urls",
        headers=auth,
        json={"release": "v1", "path": data["path"]},
    )
    minted.raise_for_status()
    url = minted.json()["url"]
    got = httpx.get(url if url.startswith("http") else f"{tax}{url}", headers=auth)
    got.raise_for_status()
    print(f"mia downloaded {data['path']} ({len(got.content)} bytes) through a signed URL bound to her")
    print(coop("access", "register", str(roots["tax"])).rstrip())


def _lm_evaluation(builder: Path, roots: dict[str, Path], urls: dict[str, str], ids: dict[str, str]) -> Path:
    """A builder's causal LM (here a tiny random one) scored on the members' good and fail chats.

    The co-ops say what of their numbers may be shown: the tax and nurses' co-ops by name, the
    farmers' co-op only inside an aggregate (it has too few records to answer anyway).
    """
    for key, consent in (("tax", "named"), ("care", "named"), ("farm", "aggregate")):
        coop("settings", "set", str(roots[key]), f"eval_policy.publication={consent}")
    model = builder / "tiny-lm"
    print(coop("eval", "tiny-model", str(model), "--seed", "7"))
    out = builder / "lm-report.json"
    args = ["eval", "request", "--key", str(builder / "requester.key"), "--task", "lm-preference"]
    args += ["--model", str(model), "--out", str(out), "--timeout", "120"]
    args += ["--purpose", "Does our language model prefer the answers co-op members marked good?"]
    for key in COOPS:
        args += ["--target", ids[key], "--local-node", f"{urls[key]},{roots[key] / 'keys' / 'eval.token'}"]
    print(coop(*args, live=True))
    print(coop("eval", "verify", str(out)))
    return out


def _demo_model() -> bytes:
    """A tiny good/fail classifier, as a model builder would ship one."""
    from coop.eval import build_label_agreement_model

    good = ["thanks that works", "clear and correct answer", "helpful explanation", "exactly right"]
    fail = ["that is wrong", "the sum is incorrect", "error in the answer", "this does not work"]
    examples = [(text, True) for text in good] + [(text, False) for text in fail]
    return build_label_agreement_model(examples * 10, dim=1024, seed=1)


def _expected_mirrors(urls: dict[str, str], roots: dict[str, Path], ids: dict[str, str]) -> dict[str, int]:
    """How many records each origin lists in its manifests (what every peer should mirror)."""
    out = {}
    for key, url in urls.items():
        origins = httpx.get(f"{url}/api/v1/federation/origins").json()
        own = next(o for o in origins if o["self"])
        out[ids[key]] = int(own["entries"])
    return out


def _converged(urls: dict[str, str], ids: dict[str, str], expected: dict[str, int]) -> bool:
    for key, url in urls.items():
        try:
            origins: list[dict[str, Any]] = httpx.get(f"{url}/api/v1/federation/origins", timeout=5).json()
        except httpx.TransportError:
            return False
        seen = {o["origin"]: o for o in origins}
        for other, node_id in ids.items():
            if other == key:
                continue
            if node_id not in seen or seen[node_id]["mirrored"] < expected[node_id]:
                return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
