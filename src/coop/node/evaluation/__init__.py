"""Federated evaluation at the node: the local interface, the requester side, the Flower app."""
