"""Game days: the plan, its criteria, and the day's report."""
