"""A ServerApp that runs ``run_eval`` once per request of the spec, timing each round.

The spec (JSON, run config ``coop-bench-spec``) names the model, the requests, where each round's
answers go (the bench signs the reports itself: a ServerApp never holds the requester key) and
where the timings go (``server_out``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from coop.eval.flower import EvalJob, ProgressEvent, encode_answers, run_eval, write_private

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    started_main = time.time()
    spec = json.loads(Path(str(context.run_config["coop-bench-spec"])).read_text())
    artifact = Path(spec["artifact"]).read_bytes()
    rounds: list[dict[str, Any]] = []
    for index, request_file in enumerate(spec["requests"]):
        job = EvalJob(
            request=Path(request_file).read_bytes(),
            artifact=artifact,
            timeout=120.0,
            wait_for_nodes=int(spec["nodes"]),
        )
        arrivals: list[float] = []
        pushed: list[int] = []
        started = time.monotonic()

        def observe(reply: Message, started: float = started, arrivals: list[float] = arrivals) -> None:
            arrivals.append(time.monotonic() - started)

        def progress(event: ProgressEvent, pushed: list[int] = pushed) -> None:
            if event.event == "sent":
                pushed.append(event.pushed)

        answers = run_eval(grid, job, now=int(time.time()), observe=observe, progress=progress)
        elapsed = time.monotonic() - started
        write_private(Path(spec["answers"][index]), encode_answers(answers))
        rounds.append(
            {
                "seconds": elapsed,
                "eval_first": min(arrivals, default=0.0),
                "eval_last": max(arrivals, default=0.0),
                "replies": len(arrivals),
                "pushed": sum(pushed),
            }
        )
    Path(spec["server_out"]).write_text(
        json.dumps({"main": started_main, "main_done": time.time(), "rounds": rounds})
    )
