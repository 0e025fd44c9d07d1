"""Every SQLite connection and output wrapper is closed by its owner, on every Python.

Python 3.13 warns about a connection that is garbage-collected open, and reports errors raised
while an ``io`` object is finalized; with warnings as errors the suite failed there (8 failed,
6 errors).  These tests hold the owners to it on 3.11 too, where nothing is reported.
"""

from __future__ import annotations

import gc
import io
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coop.node.cli.output import Printable
from coop.node.errors import StorageError
from coop.node.storage import writer
from coop.node.storage.store import Store


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[sqlite3.Connection]]:
    """Every connection the storage layer opens during the test."""
    made: list[sqlite3.Connection] = []
    real = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        made.append(conn)
        return conn

    monkeypatch.setattr(writer.sqlite3, "connect", connect)
    yield made
    for conn in made:
        conn.close()  # whatever the test found open, so the check itself leaks nothing


def _read_in_thread(store: Store) -> sqlite3.Connection:
    got: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: got.append(store.read(lambda c: c)))
    thread.start()
    thread.join()
    return got[0]


def test_store_close_closes_the_writer_and_every_threads_reader(
    tmp_path: Path, opened: list[sqlite3.Connection]
) -> None:
    store = Store(tmp_path / "coop.sqlite3")
    readers = [store.read(lambda c: c), _read_in_thread(store), _read_in_thread(store)]
    assert len(set(map(id, readers))) == 3
    store.close()
    assert all(_is_closed(conn) for conn in opened)
    assert len(opened) == 5  # the migration's, the writer's and the three readers


def test_store_read_after_close_is_refused_and_opens_nothing(
    tmp_path: Path, opened: list[sqlite3.Connection]
) -> None:
    store = Store(tmp_path / "coop.sqlite3")
    store.close()
    count = len(opened)
    with pytest.raises(StorageError, match="closed"):
        _read_in_thread_raising(store)
    assert len(opened) == count
    assert all(_is_closed(conn) for conn in opened)


def _read_in_thread_raising(store: Store) -> None:
    failures: list[BaseException] = []

    def read() -> None:
        try:
            store.read(lambda c: c.execute("SELECT 1").fetchone())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test's thread
            failures.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def test_connect_to_a_file_that_is_no_database_closes_what_it_opened(
    tmp_path: Path, opened: list[sqlite3.Connection]
) -> None:
    path = tmp_path / "coop.sqlite3"
    path.write_bytes(b"not a database, " * 512)
    with pytest.raises(StorageError, match="cannot open database"):
        writer.connect(path)
    assert len(opened) == 1
    assert _is_closed(opened[0])


def test_printable_closed_after_its_stream_leaves_the_stream_alone() -> None:
    stream = io.StringIO()
    shown = Printable(stream)
    shown.write("hi\x1b[2J")
    assert stream.getvalue() == "hi\\u001b[2J"
    stream.close()  # its owner closed it first (pytest's capture does, the interpreter at exit)
    shown.close()
    assert shown.closed


def test_printable_collected_after_its_stream_closed_reports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    stream = io.StringIO()
    shown = Printable(stream)
    stream.close()
    del shown
    gc.collect()
    assert reported == []
