"""Gated access: model builders' requests, grants, signed download URLs and the download register.

A co-op may gate licence buckets (``Settings.access.gated``): their data files then leave
only through :class:`GatedAccess` (``Node.access``), to a grantee, through a short-lived URL
signed for them, and every download is registered.
"""

from __future__ import annotations

from coop.node.access.register import DownloadView
from coop.node.access.requests import DECISION_PATH, RequestView
from coop.node.access.service import GATED_HINT, GatedAccess, gated_file, release_number
from coop.node.access.urls import SignedUrl, UrlParts

__all__ = [
    "DECISION_PATH",
    "GATED_HINT",
    "DownloadView",
    "GatedAccess",
    "RequestView",
    "SignedUrl",
    "UrlParts",
    "gated_file",
    "release_number",
]
