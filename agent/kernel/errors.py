"""What the kernel layer raises besides OSError."""

from __future__ import annotations


class Gone(Exception):
    """The object a change was made in (a network namespace, an interface, a
    process, a cgroup) no longer exists, and whatever was changed there went
    with it: there is nothing left to undo."""
