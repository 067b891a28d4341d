"""Chaos Toolkit extension for Brownout: faults through Brownout's agents,
under leases (the agents revert by themselves if `chaos` dies)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "discover"]


def discover(discover_system: bool = True) -> Any:
    """What `chaos discover chaostoolkit-brownout` lists: the actions and probes."""
    from chaoslib.discovery.discover import (
        discover_actions,
        discover_probes,
        initialize_discovery_result,
    )

    discovery = initialize_discovery_result("chaostoolkit-brownout", __version__, "brownout")
    discovery["activities"].extend(discover_actions("chaosbrownout.actions"))
    discovery["activities"].extend(discover_probes("chaosbrownout.probes"))
    return discovery
