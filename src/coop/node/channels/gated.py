"""Gated buckets on the channels: the card and the checksums go out, the data files never do.

A co-op may gate licence buckets (``settings.access.gated``): only the model builders it
granted access download their files, through the node (``/gated/...``, signed URLs). The
git, Hub and site channels are public, so for a gated bucket they publish what describes it
and nothing that holds its records: the card, ``release.json``, ``SHA256SUMS``,
``croissant.json`` and the signed statement, with the data files' SHA-256 (so a grantee's
copy checks) but without the files.  The card (``README.md``) says which buckets are gated
and where to ask for access; its ``configs`` keep only the buckets whose files are there.

Which buckets are gated is read when a release is published (the setting may change after
the cut), so the card published is the cut's card with the gated section added: the only
file of a channel's copy that differs from the signed summary, and the card says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from coop.node.releases.model import BucketSummary, ReleaseSummary

__all__ = ["ACCESS_PATH", "gated_buckets", "gated_card", "withheld_files"]

ACCESS_PATH: Final = "/access"  # the node's page where a model builder requests access


def gated_buckets(summary: ReleaseSummary, gated: Iterable[str]) -> list[BucketSummary]:
    """The buckets of ``summary`` whose licence is gated (``gated``: licence values)."""
    shut = frozenset(gated)
    return [b for b in summary.buckets if b.license.value in shut]


def withheld_files(summary: ReleaseSummary, gated: Iterable[str]) -> frozenset[str]:
    """The data files a public channel must not publish: every file of a gated bucket."""
    return frozenset(f.path for b in gated_buckets(summary, gated) for f in b.files)


def gated_card(card: str, summary: ReleaseSummary, gated: Iterable[str], *, access_url: str) -> str:
    """The cut's card with the gated buckets' section (and without their ``configs``).

    ``card`` is the cut's ``README.md``; it is returned unchanged when no bucket is gated.
    """
    shut = gated_buckets(summary, gated)
    if not shut:
        return card
    from huggingface_hub import DatasetCard

    parsed = DatasetCard(card)
    names = {b.name for b in shut}
    configs = parsed.data.get("configs")
    if isinstance(configs, list):
        kept = [c for c in configs if not (isinstance(c, dict) and c.get("config_name") in names)]
        if kept and not any(isinstance(c, dict) and c.get("default") for c in kept):
            kept[0] = {**kept[0], "default": True}
        if kept:
            parsed.data["configs"] = kept
        else:
            parsed.data.pop("configs")
    listed = ", ".join(
        f"`{b.name}` ({b.license.value}, {b.records} record{'' if b.records == 1 else 's'})" for b in shut
    )
    one = len(shut) == 1
    section = "\n".join(
        [
            "",
            "## Gated access",
            "",
            f"The co-op gates {'this bucket' if one else 'these buckets'}: {listed}.",
            f"Only model builders it granted access may download {'its' if one else 'their'} data files,"
            " from the co-op's",
            f"node: request access at <{access_url}>. The files are not published here; their",
            "SHA-256 stay in `SHA256SUMS`, `release.json` and the signed `release.dsse.json`, so a",
            "copy obtained from the co-op checks (`sha256sum -c --ignore-missing SHA256SUMS`).",
            "Gating closes this co-op's own files; copies peers already hold in federated releases",
            "cut before the gate stay public.",
            "This card is the release's card with this section added (and without the gated",
            "buckets' configs): the one file here that differs from its SHA-256 in the summary.",
        ]
    )
    text = parsed.text
    # After the title (the first heading and its paragraph): the first thing a reader sees.
    heading = text.find("\n# ")
    cut = text.find("\n\n", heading + 1) if heading >= 0 else -1
    parsed.text = section + text if cut < 0 else text[:cut] + "\n" + section + text[cut:]
    return str(parsed)
