"""Releases: the cut, revisions, tombstones, Croissant metadata, the public catalogue."""
