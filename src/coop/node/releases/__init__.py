"""Releases: what a node publishes, and everything made from it.

- ``model``: the release summary (buckets, files, checksums); ``repository``: its rows.
- ``sources``: what a release holds (the node's own records, or a federated mix);
  ``cut``: the one cut that writes either; ``writers``: the bucket files (JSONL, Parquet).
- ``card``: the dataset card; ``croissant``: Croissant metadata; ``statement``: the
  statement signed at the cut and served by every exit.
- ``revision`` (and ``revision_statement``): withdrawn records out of served releases;
  ``tombstones``: who may see which withdrawals.
- ``publications``: where releases went; ``catalog``: the public catalogue for browsing.
"""
