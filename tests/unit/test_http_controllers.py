"""The API's controllers: each mounted alone with its dependencies injected, and http/ free of SQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import TestClient

import coop.node.http as http_package
from coop.node.errors import RateLimitedError
from coop.node.http.access import Access
from coop.node.http.admin import AdminController
from coop.node.http.app import create_app
from coop.node.http.auth import Authenticator
from coop.node.http.ops import OpsController
from coop.node.http.problems import exception_handlers
from coop.node.http.ratelimit import RateLimiter
from coop.node.runtime import Node
from coop.node.scheduler import Job, JobHealth, Scheduler

from factories import make_member, make_node


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    opened = make_node(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


class StaleScheduler(Scheduler):
    """A scheduler double whose pipeline has not succeeded for an hour (injected values are type-checked)."""

    def __init__(self) -> None:
        pass  # runs nothing

    def health(self) -> list[JobHealth]:
        return [
            JobHealth(
                job=Job.PIPELINE,
                interval_seconds=5.0,
                age_seconds=3600.0,
                last_success=None,
                failures=3,
                consecutive_failures=3,
                stale_after_seconds=60.0,
                stale=True,
            )
        ]


def _given(value: object) -> Callable[[], object]:
    def provide() -> object:
        return value

    return provide


def _alone(controller: type, **objects: object) -> Litestar:
    """One controller, given exactly the objects it names: no Node-wide app around it."""
    providers = {name: Provide(_given(value), sync_to_thread=False) for name, value in objects.items()}
    return Litestar([controller], dependencies=providers, exception_handlers=exception_handlers())


def test_ops_controller_alone_healthz_with_a_stale_scheduler_answers_503_naming_the_job(node: Node) -> None:
    with TestClient(_alone(OpsController, node=node, scheduler=StaleScheduler())) as client:
        answer = client.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["stale"] == ["pipeline"]


def test_admin_controller_alone_refuses_a_member_and_serves_an_admin(node: Node) -> None:
    access = Access(Authenticator(node.store), RateLimiter(per_minute=600, burst=100))
    _, member_token = make_member(node)
    _, admin_token = make_member(node, admin=True)
    with TestClient(_alone(AdminController, node=node, access=access)) as client:
        refused = client.get(
            "/api/v1/admin/waiting-room", headers={"Authorization": f"Bearer {member_token}"}
        )
        served = client.get("/api/v1/admin/waiting-room", headers={"Authorization": f"Bearer {admin_token}"})
    assert refused.status_code == 403 and refused.json()["field"] == "Authorization"
    assert served.status_code == 200 and served.json() == []


def test_access_limits_each_credential_on_its_own_clock(node: Node) -> None:
    now = [0.0]
    access = Access(Authenticator(node.store), RateLimiter(per_minute=60, burst=1), clock=lambda: now[0])
    access.limit("m1")
    access.limit("m2")  # another credential: its own bucket
    with pytest.raises(RateLimitedError) as refused:
        access.limit("m1")
    assert refused.value.retry_after == 1
    now[0] += 1.0
    access.limit("m1")  # a second later, the bucket has refilled one request


def test_controllers_keep_their_written_route_order_in_the_openapi_document(node: Node) -> None:
    with TestClient(create_app(node, background=False)) as client:
        paths = list(client.get("/schema/openapi.json").json()["paths"])
    governance = [p for p in paths if p.startswith("/api/v1/governance/")]
    # As written in GovernanceController (not alphabetical: "audit" would come first).
    assert governance[:3] == [
        "/api/v1/governance/settings",
        "/api/v1/governance/state",
        "/api/v1/governance/proposals",
    ]
    assert (
        paths.index("/api/v1/node") < paths.index("/api/v1/releases") < paths.index("/api/v1/contributions")
    )


_SQL = re.compile(r"\.execute\(|\bsqlite3\b|\b(SELECT|INSERT|UPDATE|DELETE FROM|PRAGMA)\b")


def test_http_package_holds_no_sql() -> None:
    folder = Path(http_package.__file__).parent
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(folder.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _SQL.search(line)
    ]
    assert offenders == []
