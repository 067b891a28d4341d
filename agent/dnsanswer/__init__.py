"""The DNS answerer: a process the agent runs for a DNS fault with names, in
the target's network namespace, that answers the matching names with an
error or spoofed records and forwards every other query to its resolver."""
