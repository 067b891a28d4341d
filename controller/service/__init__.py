"""`brownout serve`: the long-running controller. Its HTTP API and console, its
stored state (kill switch, experiments, live runs), and the runs it drives with
the same runner as `brownout run`."""
