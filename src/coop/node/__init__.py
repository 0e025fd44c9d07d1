"""The composition root: config, store, intake pipeline, releases, HTTP app, CLI, scheduler.

Imports every other package of ours; nothing imports it. Importing ``coop.node`` (or a light
module such as :mod:`coop.node.errors`) loads nothing heavy: :class:`Node` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coop.node.runtime import Node

__all__ = ["Node"]


def __getattr__(name: str) -> Any:
    if name == "Node":
        from coop.node.runtime import Node

        return Node
    raise AttributeError(f"module 'coop.node' has no attribute {name!r}")
