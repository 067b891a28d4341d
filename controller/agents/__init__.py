"""Talking to agents: the typed gRPC client, the fleet (bounded parallel calls,
one outcome per agent), lease keepers, fault watches, the inventory and TLS."""
