"""This node's side of federation: the book of peers' manifests, its own manifests, gossip."""
