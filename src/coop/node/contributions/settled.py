"""Contributions stored only on the collective settings their defaults were taken from.

The intake's hot route keeps the settings in memory instead of reading them for every
request; the write checks them in its own transaction, so a change (by a vote, an admin,
or the CLI in another process) is never missed: an item built on older settings fails
alone with :class:`SettingsChangedError`, and the route builds it again on the new ones.
"""

from __future__ import annotations

import sqlite3

from coop.node.collective.settings import settings_version
from coop.node.contributions.repository import InsertResult, NewContribution, insert_contributions
from coop.node.errors import BusyError, InputError

__all__ = ["SettingsChangedError", "insert_if_settled"]


class SettingsChangedError(BusyError):
    """The co-op's settings changed after a submission took its defaults from them."""


def insert_if_settled(
    conn: sqlite3.Connection, items: list[tuple[int, NewContribution]]
) -> list[InsertResult | InputError | SettingsChangedError]:
    """:func:`insert_contributions` for the items built on the settings version in force in this
    transaction (each item: ``(version, contribution)``); every other item fails alone."""
    version = settings_version(conn)
    results: list[InsertResult | InputError | SettingsChangedError] = [
        SettingsChangedError("the co-op's settings changed while this was sent; send it again") for _ in items
    ]
    current = [index for index, (built_on, _) in enumerate(items) if built_on == version]
    stored = insert_contributions(conn, [items[index][1] for index in current])
    for index, result in zip(current, stored, strict=True):
        results[index] = result
    return results
