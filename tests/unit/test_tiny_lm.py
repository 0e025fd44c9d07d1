"""The tiny causal LM builder and ``coop eval tiny-model``: deterministic, loadable, one-line errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coop.eval.lm import LmPreference
from coop.eval.tiny_lm import build_tiny_lm
from coop.node.cli import main
from coop.node.evaluation.requester import read_model


def _digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_the_same_seed_builds_the_same_bytes_and_another_seed_other_weights(tmp_path: Path) -> None:
    first = _digest(build_tiny_lm(tmp_path / "a", seed=5))
    assert _digest(build_tiny_lm(tmp_path / "b", seed=5)) == first
    other = _digest(build_tiny_lm(tmp_path / "c", seed=6))
    assert other["tokenizer.json"] == first["tokenizer.json"]
    assert other["model.onnx"] != first["model.onnx"]


def test_cli_tiny_model_writes_a_folder_and_an_artifact_lm_preference_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "tiny-model", str(tmp_path / "tiny"), "--seed", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == [
        "config.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert "lm-preference" in capsys.readouterr().out
    assert not (tmp_path / "tiny.zip").exists()  # one artifact: the folder, packed by coop eval request
    model = LmPreference().load(read_model(tmp_path / "tiny"))
    assert model.window == 64
    model.close()


def test_cli_tiny_model_refuses_a_folder_in_use_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["eval", "tiny-model", str(tmp_path / "busy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
