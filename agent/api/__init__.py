"""The gRPC face of the agent: a thin servicer, wire <-> domain conversion,
authorisation, TLS and the audit log. The only place the wire format is read
or written."""
