"""The node's HTTP API."""

from coop.node.http.app import create_app

__all__ = ["create_app"]
