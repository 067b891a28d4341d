"""Run reports: figures from a journal and its timeline, charts, renderers."""
