"""`make demo`: a co-op node on 127.0.0.1, fed the sample chats, processed and released.

Everything runs through the real command line and HTTP API, as a co-op
would use them.  Set KEEP=1 to leave the node serving at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo-data"
SAMPLES = ROOT / "samples"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def coop(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "coop.node.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    if result.stderr.strip():
        print(result.stderr.rstrip(), file=sys.stderr)
    if result.returncode != 0:
        raise SystemExit(f"demo: `coop {args[0]}` failed (exit {result.returncode})")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the node exited early; see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"demo: the node did not start; see {log}")


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    node_dir = DEMO / "tax-law-coop"

    say("1. A co-op sets up its node")
    node_id = coop("init", str(node_dir), "--name", "Tax Law Co-op")
    print(f"node id {node_id}")
    admin = coop("member", "add", str(node_dir), "ada", "--admin")
    member = coop("member", "add", str(node_dir), "ben")
    print("added admin 'ada' and member 'ben' (each got a bearer token)")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = DEMO / "node.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "coop.node.cli", "serve", str(node_dir), "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=ENV,
        start_new_session=True,
    )
    try:
        wait_ready(url, proc, log)
        print(f"serving on {url} (log: {log.relative_to(ROOT)})")

        say("2. Members share chats (coop contribute)")
        shares = [
            ("openwebui-export.json", "good", ["--license", "CC-BY-4.0", "--tag", "open-webui"]),
            (
                "openwebui-chat.json",
                "fail",
                ["--license", "CC-BY-SA-4.0", "--correction", "See the fix."],
            ),
            (
                "openwebui-export.ndjson",
                "good",
                ["--license", "CC0-1.0", "--ai-use", "train-ai=n;exceptions=cc-cr, search=y"],
            ),
            ("good-chat.txt", "good", ["--license", "CC0-1.0", "--attribution", "username"]),
            (
                "fail-chat.txt",
                "fail",
                ["--license", "CC-BY-SA-4.0", "--ai-use", "train-genai=n", "--note", "wrong sum"],
            ),
            ("messages.json", "good", ["--license", "CC-BY-4.0", "--scope", "federation"]),
            ("quarantine-chat.txt", "fail", ["--license", "CC-BY-4.0"]),
        ]
        for name, label, extra in shares:
            token = admin if name.startswith("openwebui") else member
            out = coop(
                "contribute", str(SAMPLES / name), "--node", url, "--token", token,
                "--label", label, "--consent", *extra,
            )  # fmt: skip
            print(
                f"{name} ({label}): "
                + ", ".join(line.split()[0][-12:] + " " + line.split()[1] for line in out.splitlines())
            )

        say("3. The pipeline redacts personal data and quarantines what needs review")
        report = httpx.post(
            f"{url}/api/v1/admin/process", headers={"Authorization": f"Bearer {admin}"}
        ).json()
        print(f"processed now: {report}")
        time.sleep(0.5)
        for line in coop("quarantine", "list", str(node_dir)).splitlines():
            print(f"quarantined: {line}")

        say("4. An admin cuts a release (coop release)")
        version = coop("release", str(node_dir))
        release_dir = node_dir / "releases" / version
        for line in (release_dir / "SHA256SUMS").read_text().splitlines():
            print(f"  {line}")

        say("5. Where to look")
        print(f"  dataset card     {release_dir.relative_to(ROOT)}/README.md")
        print(f"  load a bucket    datasets.load_dataset('{release_dir.relative_to(ROOT)}', 'cc-by-sa')")
        print(f"  release (HTTP)   {url}/releases/{version}")
        print(f"  robots.txt       {url}/robots.txt   (Content-Usage per bucket)")
        print(f"  metrics          {url}/metrics      and: coop metrics {node_dir.relative_to(ROOT)}")
        print(f"  retention        coop retention {node_dir.relative_to(ROOT)}")
        print(f"  API schema       {url}/schema")
        print()
        print(coop("metrics", str(node_dir)))
        if os.environ.get("KEEP") == "1":
            print(f"\nThe node keeps serving on {url}; Ctrl-C to stop.")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    print(f"\nThe node was stopped; serve it again with: coop serve {node_dir.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
