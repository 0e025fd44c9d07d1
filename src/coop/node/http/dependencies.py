"""The objects controllers are handed by Litestar's dependency injection, kept in the app's state.

:func:`coop.node.http.app.create_app` builds one :class:`Services` per app and puts it in
``app.state``; each provider below hands one part of it to the handlers that name it as a
parameter (``node``, ``access``, ``scheduler``, ``intake``, ``federation``, ``evaluation``).
A test can call a handler's function with its own objects instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from litestar.datastructures import State
from litestar.di import Provide

from coop.node.evaluation.service import Evaluation
from coop.node.http.access import Access
from coop.node.http.contributions import Intake
from coop.node.peering.service import FederationService
from coop.node.runtime import Node
from coop.node.scheduler import Scheduler

__all__ = ["STATE_KEY", "Services", "dependencies"]

STATE_KEY: Final = "coop.services"


@dataclass(frozen=True)
class Services:
    """What the API's handlers act through, built once per app."""

    node: Node
    access: Access
    scheduler: Scheduler
    intake: Intake


def _services(state: State) -> Services:
    return cast(Services, state[STATE_KEY])


def _node(state: State) -> Node:
    return _services(state).node


def _access(state: State) -> Access:
    return _services(state).access


def _scheduler(state: State) -> Scheduler:
    return _services(state).scheduler


def _intake(state: State) -> Intake:
    return _services(state).intake


def _federation(state: State) -> FederationService:
    return _services(state).node.federation


def _evaluation(state: State) -> Evaluation:
    return _services(state).node.evaluation


def dependencies() -> dict[str, Provide]:
    """The app-level providers, by the parameter name a handler asks for."""
    providers = {
        "node": _node,
        "access": _access,
        "scheduler": _scheduler,
        "intake": _intake,
        "federation": _federation,
        "evaluation": _evaluation,
    }
    return {name: Provide(provider, sync_to_thread=False) for name, provider in providers.items()}
