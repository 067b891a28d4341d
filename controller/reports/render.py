"""A run's report as one self-contained HTML file (no external asset:
printable and readable offline), as Markdown with the charts as SVG files
beside it, or as JSON for machines."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from controller.reports import svg
from controller.reports.figures import LITMUS_SCORE, ProbeFigures, Report

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #000; background: #fff; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 2px solid #000; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #666; padding: .25rem .5rem; text-align: left; vertical-align: top; }
.figures td { font-variant-numeric: tabular-nums; }
.status-completed { font-weight: 700; } .status-aborted, .status-failed { font-weight: 700;
  text-decoration: underline; }
svg { max-width: 100%; height: auto; border: 1px solid #ccc; }
.actions li { min-height: 1.6rem; border-bottom: 1px dotted #999; }
@media print { body { margin: 0; max-width: none; } section { break-inside: avoid; } }
"""


def _s(x: float | None, unit: str = "s") -> str:
    return "-" if x is None else f"{x:.1f} {unit}".strip()


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def recovery_rows(p: ProbeFigures) -> list[str]:
    """Time to detect, time to recover, availability, checks passed."""
    detect = _s(p.time_to_detect) if p.time_to_detect is not None else "no deviation"
    if p.recovered is None:
        recover = "-"
    elif p.recovered:
        recover = _s(p.time_to_recover)
    else:
        recover = "not recovered"
    return [detect, recover, _pct(p.availability), f"{p.passed} of {p.checks}"]


def summary_rows(r: Report) -> list[tuple[str, str]]:
    return [
        ("Title", r.title),
        ("Hypothesis", r.hypothesis or "-"),
        (
            "Status",
            r.status
            + (f": {r.reason}" if r.reason else "")
            + (" (deviated)" if r.deviated else ""),
        ),
        ("Started", r.started),
        ("Duration", _s(r.duration)),
        ("Targets", f"{len(r.targets)}: {', '.join(r.targets) or '-'}"),
        ("Blast radius reached", f"{r.blast_radius:g} % of the fleet"),
        ("Resilience score", "-" if r.score is None else f"{r.score:g} %"),
    ]


def html(r: Report) -> str:
    end = max([r.duration or 0.0, *(p.samples[-1][0] for p in r.probes if p.samples)])
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Run report: {escape(r.title)} ({escape(r.run_id)})</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(r.title)}</h1>",
        f'<p>Run <code id="run-id">{escape(r.run_id)}</code></p>',
        '<section id="summary"><h2>Summary</h2><table>',
    ]
    for k, v in summary_rows(r):
        cls = f' class="status-{escape(r.status)}"' if k == "Status" else ""
        out.append(f'<tr><th scope="row">{k}</th><td{cls}>{escape(v)}</td></tr>')
    out.append("</table>")
    if r.agents:
        out.append('<table id="agents"><caption>Each agent\'s outcome</caption>'
                   '<tr><th scope="col">Agent</th><th scope="col">Outcome</th></tr>')  # fmt: skip
        out += [f"<tr><td>{escape(a)}</td><td>{escape(o)}</td></tr>" for a, o in r.agents.items()]
        out.append("</table>")
    out.append("</section>")
    out.append('<section id="recovery"><h2>Recovery</h2>'
               '<table class="figures"><tr><th scope="col">Probe</th>'
               '<th scope="col">Time to detect</th><th scope="col">Time to recover</th>'
               '<th scope="col">Availability during the faults</th>'
               '<th scope="col">Checks passed</th></tr>')  # fmt: skip
    for p in r.probes:
        cells = "".join(f"<td>{escape(c)}</td>" for c in recovery_rows(p))
        out.append(f'<tr data-probe="{escape(p.name)}"><th scope="row">{escape(p.name)}</th>'
                   f"{cells}</tr>")  # fmt: skip
    out.append(
        "</table><p>Time to detect: from the first fault's activation to the first sample out"
        " of tolerance. Time to recover: from the revert until the probe met its tolerance"
        " again. Availability: the share of samples in tolerance while the faults were on."
        f' Resilience score: <a href="{LITMUS_SCORE}">as Litmus defines it</a>, the weighted'
        " share of probe checks passed.</p></section>"
    )
    out.append('<section id="charts"><h2>Probes</h2>')
    for i, p in enumerate(r.probes):
        note = ""
        if p.downsampled:
            d = p.downsampled
            note = (
                f"<p>{d['kept']} of {d['seen']} samples shown (downsampled {d['factor']}&times;;"
                " every change in and out of tolerance kept).</p>"
            )
        caption = f"{escape(p.name)}: {escape(p.tolerance.get('describe', ''))}"
        chart = svg.chart(p, r.spans, r.marks, end, f"chart-{i}")
        out.append(
            f'<figure id="probe-{i}"><figcaption>{caption}</figcaption>{chart}{note}</figure>'
        )
    if not r.probes:
        out.append("<p>No probe was sampled: the experiment has no steady-state hypothesis.</p>")
    out.append("</section>")
    out.append('<section id="findings"><h2>Findings</h2><ul>')
    out += [f"<li>{escape(f)}</li>" for f in r.findings] or ["<li>None.</li>"]
    out.append("</ul></section>")
    out.append('<section id="notes"><h2>Notes</h2>')
    if r.notes:
        out.append("<ol>")
        out += [f"<li>T+{n['t']:.0f}s {escape(n['by'])}: {escape(n['text'])}</li>" for n in r.notes]
        out.append("</ol>")
    else:
        out.append("<p>None.</p>")
    out.append("</section>")
    out.append('<section id="actions"><h2>Action items</h2><ul class="actions">'
               "<li></li><li></li><li></li></ul></section>")  # fmt: skip
    out.append("</body></html>")
    return "\n".join(out)


def markdown(r: Report, chart_name: Any) -> tuple[str, dict[str, str]]:
    """The report as Markdown, and its charts: {file name: SVG}. chart_name(i)
    names probe i's chart file."""
    end = max([r.duration or 0.0, *(p.samples[-1][0] for p in r.probes if p.samples)])
    lines = [f"# {r.title}", "", f"Run `{r.run_id}`", "", "## Summary", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_md(v)} |" for k, v in summary_rows(r)]
    if r.agents:
        lines += ["", "| Agent | Outcome |", "|---|---|"]
        lines += [f"| {_md(a)} | {_md(o)} |" for a, o in r.agents.items()]
    lines += ["", "## Recovery", "",
              "| Probe | Time to detect | Time to recover | Availability | Checks passed |",
              "|---|---|---|---|---|"]  # fmt: skip
    lines += [f"| {_md(p.name)} | " + " | ".join(recovery_rows(p)) + " |" for p in r.probes]
    lines += ["", f"Resilience score as [Litmus defines it]({LITMUS_SCORE}).", "", "## Probes", ""]
    charts: dict[str, str] = {}
    for i, p in enumerate(r.probes):
        name = chart_name(i)
        charts[name] = svg.chart(p, r.spans, r.marks, end, f"chart-{i}")
        lines += [f"![{_md(p.name)}: {_md(p.tolerance.get('describe', ''))}]({name})", ""]
    lines += ["## Findings", ""] + ([f"- {_md(f)}" for f in r.findings] or ["- None."])
    lines += ["", "## Notes", ""]
    lines += [f"1. T+{n['t']:.0f}s {_md(n['by'])}: {_md(n['text'])}" for n in r.notes] or ["None."]
    lines += ["", "## Action items", "", "- [ ] ", "- [ ] ", ""]
    return "\n".join(lines), charts


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def as_json(r: Report) -> str:
    return json.dumps(r.as_dict(), indent=2, default=str)
