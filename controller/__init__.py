"""Brownout controller: talks to agents only through the generated gRPC client
(agents/), runs experiments (experiments/), and is driven by the `brownout`
command (cli/). What it shares with the agent lives in the brownout package."""
