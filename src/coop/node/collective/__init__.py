"""Collective governance in the store: settings, proposals and votes, the audit log, payouts."""
