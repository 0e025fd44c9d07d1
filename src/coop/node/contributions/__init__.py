"""Contributions: the wire requests, the repository in the store, the pipeline, retention."""
