"""`coop eval request --model FOLDER`: the folder is packed so the same files always sign the same hash."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from coop.eval.lm import LmPreference
from coop.eval.tiny_lm import build_tiny_lm
from coop.node.errors import InputError
from coop.node.evaluation.requester import read_model


def test_a_folder_packs_to_the_same_bytes_whatever_its_times_and_modes(tmp_path: Path) -> None:
    folder = build_tiny_lm(tmp_path / "lm", seed=3)
    first = read_model(folder)
    for child in folder.iterdir():
        os.utime(child, (1, 1))
        child.chmod(0o600)
    (folder / ".DS_Store").write_bytes(b"finder litter")
    assert hashlib.sha256(read_model(folder)).hexdigest() == hashlib.sha256(first).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname) for m in members} == {(0, 0o644, 0, 0, "")}


def test_a_changed_file_changes_the_hash(tmp_path: Path) -> None:
    folder = build_tiny_lm(tmp_path / "lm", seed=3)
    before = read_model(folder)
    config = folder / "config.json"
    config.write_text(config.read_text().replace("}", ', "note": 1}', 1))
    assert read_model(folder) != before


def test_the_packed_folder_is_what_the_evaluator_loads(tmp_path: Path) -> None:
    model = LmPreference().load(read_model(build_tiny_lm(tmp_path / "lm", seed=3)))
    model.close()


def test_a_file_is_taken_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(b"\x00bytes")
    assert read_model(path) == b"\x00bytes"


@pytest.mark.parametrize("kind", ["empty", "missing"])
def test_an_empty_or_missing_model_is_refused_naming_the_option(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model"
    if kind == "empty":
        path.mkdir()
    with pytest.raises(InputError) as caught:
        read_model(path)
    assert caught.value.field == "--model"
