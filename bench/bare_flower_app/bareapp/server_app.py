"""The bare ServerApp: one evaluate message to every connected SuperNode, one result file.

Run config: ``bare-result-file`` (the JSON result, written at the end), ``bare-stamps-file`` (JSON
lines ``{"event": ..., "at": epoch seconds}`` as the run goes), ``bare-wait-for-nodes`` (wait until
that many SuperNodes are connected, bounded by ``bare-timeout``), ``bare-poll`` (0: one
``grid.send_and_receive``, which pulls every 3 s; else push, then pull every ``bare-poll`` s).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


def _stamp(path: str, event: str, **extra: object) -> None:
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps({"event": event, "at": time.time(), **extra}) + "\n")


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    stamps = str(config.get("bare-stamps-file", ""))
    _stamp(stamps, "main")
    timeout = float(config.get("bare-timeout", 120.0))
    wanted = int(config.get("bare-wait-for-nodes", 0))
    deadline = time.monotonic() + timeout
    nodes = sorted(grid.get_node_ids())
    while len(nodes) < wanted and time.monotonic() < deadline:
        time.sleep(1.0)
        nodes = sorted(grid.get_node_ids())
    _stamp(stamps, "pushed", nodes=len(nodes))
    messages = [
        Message(
            RecordDict({"config": ConfigRecord({"ask": "evaluate"})}),
            dst_node_id=node,
            message_type=MessageType.EVALUATE,
        )
        for node in nodes
    ]
    poll = float(config.get("bare-poll", 0.0))
    if poll > 0:  # push, then pull every `poll` s (send_and_receive pulls every 3 s)
        waiting = {str(i) for i in grid.push_messages(messages) if i}
        replies = []
        while waiting and time.monotonic() < deadline:
            time.sleep(poll)
            for reply in grid.pull_messages(waiting):
                waiting.discard(reply.metadata.reply_to_message_id)
                replies.append(reply)
    else:
        replies = list(grid.send_and_receive(messages, timeout=timeout))
    _stamp(stamps, "replies", replies=len(replies))
    total = 0
    for reply in replies:
        if not reply.has_error():
            value = reply.content.metric_records["metrics"]["num-examples"]
            total += int(value) if isinstance(value, int | float) else 0
    result = Path(str(config["bare-result-file"]))
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_text(json.dumps({"nodes": len(nodes), "replies": len(replies), "num-examples": total}))
    tmp.replace(result)
    _stamp(stamps, "written")
