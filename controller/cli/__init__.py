"""The `brownout` command: main (the parser and agent commands), commands (the
fleet and experiment commands), kinds/ (one `inject` subcommand per fault
kind), argtypes (flag checks), render, progress, certs and the demo."""
