"""The README documents every setting, every CLI command and every route (a datasette habit)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from coop.node.cli import cli
from coop.node.config import Config, NodeSection

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _settings() -> list[str]:
    config = Config(node=NodeSection(name="x"))
    names = []
    for section, value in msgspec.to_builtins(config).items():
        names += [f"{section}.{key}" for key in value]
    return names


@pytest.mark.parametrize("setting", _settings())
def test_readme_documents_setting(setting: str) -> None:
    assert f"`{setting}`" in README


def _governance_settings() -> list[str]:
    from coop.governance import Settings

    names = []
    for section, value in msgspec.to_builtins(Settings()).items():
        if isinstance(value, dict):
            names += [f"{section}.{key}" for key in value]
        else:
            names.append(section)
    return names


@pytest.mark.parametrize("setting", _governance_settings())
def test_readme_documents_collective_setting(setting: str) -> None:
    assert f"`{setting}`" in README


def _commands() -> list[str]:
    return sorted(cli.commands)


@pytest.mark.parametrize("command", _commands())
def test_readme_documents_command(command: str) -> None:
    assert f"coop {command}" in README


def test_readme_shows_both_commands_first() -> None:
    head = README[:800]
    assert "make demo" in head
    assert "make test" in head
