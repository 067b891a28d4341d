"""Brownout controller: talks to agents only through the generated gRPC client."""
