"""Network faults: netem and bandwidth share one qdisc tree per interface
(shaping, qdisc_tree), partitions are nftables rules; traffic turns filters
into u32 matches and protect keeps the controller reachable."""
