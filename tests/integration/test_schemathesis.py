"""schemathesis against a real node's /schema/openapi.json: no 5xx, and every answer as documented.

Requests are generated from the OpenAPI document itself, as anonymous, a member, an admin
and an integration key: a handful of examples per operation, derandomized, so a run is
the same in CI and stays short.  Every answer must be a declared status, a declared media
type and match its declared schema (the problem details too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from coop.node.members import repository as members_repo
from coop.node.members.accounts import Role
from coop.node.runtime import Node

from harness import bearer, init_node, running

pytestmark = pytest.mark.integration

_EXAMPLES = 3  # per operation, mode and identity: 58 x 2 x 4 x 3 requests stay well under a minute
_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
_ROLES = ("anonymous", "member", "admin", "integration")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, dict[str, str]]]]:
    root = init_node(
        tmp_path_factory.mktemp("schemathesis") / "node",
        # Generated requests come fast from one address: keep them from being only 429s.
        rate_limit={
            "per_ip_per_minute": 100_000,
            "per_ip_burst": 100_000,
            "per_token_per_minute": 100_000,
            "per_token_burst": 100_000,
        },
    )
    made = Node(root)  # in-process: three `coop` commands would cost seconds each
    try:
        now = made.now()
        _, member = made.store.write(
            lambda c: members_repo.add_member(c, name="sam", role=Role.MEMBER, salt=made.salt, now=now)
        )
        _, admin = made.store.write(
            lambda c: members_repo.add_member(c, name="ada", role=Role.ADMIN, salt=made.salt, now=now)
        )
        _, key = made.store.write(lambda c: members_repo.add_integration(c, name="owui", now=now))
    finally:
        made.close()
    identities = {
        "anonymous": {},
        "member": bearer(member),
        "admin": bearer(admin),
        "integration": bearer(key),
    }
    with running(root) as process:
        yield process.url, identities


def _exercise(url: str, headers: dict[str, str]) -> list[str]:
    """Every operation of the node's document, a few generated requests each; the failures in words.

    Invalid requests (negative mode) too, where the document constrains something to violate:
    a JSON body or an integer parameter (ids, ``after=``, ``limit=``).
    """
    document = requests.get(f"{url}/schema/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40, "the document lost its operations"
    with requests.Session() as session:
        for operation in operations:
            modes = [GenerationMode.POSITIVE]
            if _constrained(document["paths"][operation.path][operation.method.lower()]):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                run = _runner(operation.as_strategy(mode), url, headers, session)
                try:
                    run()
                except Exception as exc:  # noqa: BLE001 - one operation's failure must not hide another's
                    # A flaky failure says what failed the first time (its sub-exceptions), in words.
                    inner = "".join(
                        f"\n  first: {type(sub).__name__}: {str(sub)[:700]}"
                        for sub in getattr(exc, "exceptions", ())
                    )
                    failures.append(
                        f"{operation.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:1500]}{inner}"
                    )
    return failures


def _constrained(operation: dict[str, Any]) -> bool:
    integers = any(p.get("schema", {}).get("type") == "integer" for p in operation.get("parameters", []))
    return integers or "requestBody" in operation


def _runner(
    strategy: Any, url: str, headers: dict[str, str], session: requests.Session
) -> Callable[[], None]:
    @settings(
        max_examples=_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure, in words, is enough
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        # Generous: a release cut on a loaded CI machine may take seconds; speed is not checked here.
        response = case.call(base_url=url, session=session, headers=headers, timeout=60)
        case.validate_response(response, checks=_CHECKS)

    return run


@pytest.mark.parametrize("role", _ROLES)
def test_generated_requests_get_no_5xx_and_documented_answers(
    node: tuple[str, dict[str, dict[str, str]]], role: str
) -> None:
    url, identities = node
    failures = _exercise(url, identities[role])
    assert not failures, f"{len(failures)} operations failed as {role}:\n\n" + "\n\n".join(failures)


def test_schemathesis_is_a_dev_dependency() -> None:
    """The gate installs it with the dev extra (not at run time)."""
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    dev = project["project"]["optional-dependencies"]["dev"]
    assert any(item.replace(" ", "").startswith("schemathesis") for item in dev), dev
