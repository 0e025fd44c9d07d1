"""This node's peering: the book store, pinned peers, its own manifests, gossip rounds, answers to peers."""
