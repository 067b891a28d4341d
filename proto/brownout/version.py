"""The one version of Brownout: agent, controller and wire contract ship together."""

__version__ = "0.1.0"
