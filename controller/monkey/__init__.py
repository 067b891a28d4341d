"""Chaos Monkey: random terminations by group under the schedules' calendar
and gates. model (a monkey as people write it) and planning (the day's draw)
are logic only; the service runs them."""
