"""A simulated fleet for the scale benchmark: one process serving
brownout.v1.Agent for every address 127.A.B.C on one port."""
