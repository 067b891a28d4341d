"""Schedules: when experiments run by themselves (cron in a time zone, or an
interval), what holds them back (blackouts, run windows, a daily cap, a run
still going), and the plan that `brownout schedules next` shows. Pure logic
on an injectable clock; the service's scheduler (controller/service/
scheduler.py) drives it."""
