"""The `brownout` command: main (the parser and agent commands), commands (the
fleet and experiment commands), faultflags (the `inject KIND` flags,
made from brownout.faultspecs), argtypes (flag checks), render, progress, certs and the demo."""
