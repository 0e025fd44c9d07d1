"""Changing settings: dotted paths and sections, validation naming the path, rules per class."""

from __future__ import annotations

from typing import Any

import pytest

from coop.governance import (
    Embargo,
    InvalidValueError,
    License,
    SettingClass,
    Settings,
    apply_changes,
    changed_classes,
    settings_digest,
)


def test_apply_changes_dotted_path_changes_one_value() -> None:
    updated = apply_changes(Settings(), {"defaults.license": "CC0-1.0", "embargo.on": True})
    assert updated.defaults.license is License.CC0
    assert updated.embargo.on
    assert updated.embargo.whole


def test_apply_changes_whole_section_fills_defaults() -> None:
    updated = apply_changes(Settings(), {"embargo": {"on": True, "tags": ["tax"]}})
    assert updated.embargo.tags == ("tax",)
    assert updated.embargo.languages == ()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"colour": "red"}, "colour", id="unknown-class"),
        pytest.param({"embargo.colour": True}, "embargo.colour", id="unknown-key"),
        pytest.param({"defaults.license": "CC-BY-NC-4.0"}, "defaults.license", id="unknown-licence"),
        pytest.param({"volume_cap.monthly_records": -1}, "volume_cap.monthly_records", id="cap-below-zero"),
        pytest.param(
            {"volume_cap.monthly_records": "many"}, "volume_cap.monthly_records", id="cap-wrong-type"
        ),
        pytest.param({"payout.contributors_bp": 8000}, "payout", id="shares-not-100"),
        pytest.param({"embargo.on": "yes"}, "embargo.on", id="bool-wrong-type"),
        pytest.param({"defaults.ai_use": "train-ai=maybe"}, "defaults.ai_use", id="bad-aipref"),
        pytest.param({"defaults.ai_use": "trian-ai=n"}, "defaults.ai_use", id="aipref-label-typo"),
        pytest.param({"embargo.languages": ["not a tag"]}, "embargo.languages[0]", id="bad-language"),
        pytest.param({"rules.classes.embargo.quorum_percent": 101}, "rules", id="quorum-over-100"),
    ],
)
def test_apply_changes_invalid_names_the_path(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        apply_changes(Settings(), changes)
    assert (caught.value.field or "").startswith(field), caught.value.field


def test_changed_classes_reads_the_first_segment() -> None:
    assert changed_classes({"embargo.on": True, "defaults.scope": "node"}) == {
        SettingClass.EMBARGO,
        SettingClass.DEFAULTS,
    }


def test_default_rules_let_admins_flip_emergency_switches_alone() -> None:
    rules = Settings().rules
    assert rules.rule(SettingClass.EMBARGO).admin_alone
    assert rules.rule(SettingClass.QUALITY_FREEZE).admin_alone
    assert not rules.rule(SettingClass.PAYOUT).admin_alone
    assert not rules.combined({SettingClass.EMBARGO, SettingClass.DEFAULTS}).admin_alone


def test_embargo_covers_by_tag_or_language() -> None:
    embargo = apply_changes(
        Settings(), {"embargo": {"on": True, "tags": ["tax"], "languages": ["id"]}}
    ).embargo
    assert embargo.covers(tags=["tax"], language="en")
    assert embargo.covers(tags=[], language="id")
    assert not embargo.covers(tags=["law"], language="en")


def test_settings_digest_changes_with_any_setting() -> None:
    assert settings_digest(Settings()) != settings_digest(apply_changes(Settings(), {"quality_freeze": True}))


@pytest.mark.parametrize(
    ("tags", "language", "covered"),
    [
        (("Tax",), None, True),
        (("TAX", "x"), None, True),
        ((), "id-ID", True),
        ((), "ID", True),
        ((), "id", True),
        ((), "ind", False),
        ((), "en", False),
        (("taxes",), "idx", False),
    ],
)
def test_embargo_covers_tags_without_case_and_a_language_with_its_regional_forms(
    tags: tuple[str, ...], language: str | None, covered: bool
) -> None:
    embargo = Embargo(on=True, tags=("tax",), languages=("id",))
    assert embargo.covers(tags=tags, language=language) is covered
