"""Room for one descriptor per simulated agent (and some), on both sides."""

from __future__ import annotations

import resource

WANT = 1 << 17  # 20,000 agents and their UDP and epoll descriptors, with room


def raise_fd_limit(want: int = WANT) -> None:
    """Soft and hard limits up to `want`: root may raise the hard one (to
    fs.nr_open); anyone else gets the hard limit they have."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
