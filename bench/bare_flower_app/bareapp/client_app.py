"""The bare ClientApp: answers an evaluate message with a trivial metric, touching no data."""

from __future__ import annotations

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    """One count and a constant: the least a reply can carry."""
    return Message(RecordDict({"metrics": MetricRecord({"num-examples": 1, "score": 1.0})}), reply_to=message)
