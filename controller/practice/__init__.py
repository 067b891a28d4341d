"""The practice at a glance: the maturity model, from facts passed in."""
