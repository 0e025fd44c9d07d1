"""Releases: what a node publishes, and everything made from it.

- ``model``: the release summary (buckets, files, checksums); ``repository``: its rows.
- ``sources``: what a release holds (the node's own records, or a federated mix);
  ``cut``: the one cut that writes either; ``writers``: the bucket files (JSONL, Parquet).
- ``card``: the dataset card; ``croissant``: Croissant metadata; ``statement``: the
  statement signed at the cut and served by every exit.
- ``revision`` (and ``revision_statement``): withdrawn records out of served releases;
  ``tombstones``: who may see which withdrawals.
- ``publications``: where releases went; ``channel_records``: which records each publish
  channel carried, when they went live and when they left; ``catalog``: the public catalogue.
- ``highlights``: the released records admins pick for the Atom feed and the microblog.
"""
