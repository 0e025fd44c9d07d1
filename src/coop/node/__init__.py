"""The composition root: config, store, intake pipeline, releases, HTTP app, CLI, scheduler.

Imports every other package of ours; nothing imports it.
"""

from coop.node.runtime import Node

__all__ = ["Node"]
