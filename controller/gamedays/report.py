"""The report of a game day: an executive summary, the timeline across the
scenarios, each success criterion passed or failed with its measured value,
the mean time to recover, the availability, and the findings and notes of
every scenario's run. Built from the stored game day and its runs' journals
alone; one self-contained HTML file, Markdown, or JSON."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from controller.reports import figures, render, svg
from controller.store.records import StoredGameDay


@dataclass
class DayReport:
    gameday: StoredGameDay
    runs: dict[str, figures.Report]  # scenario name -> its run's report
    timeline: list[dict[str, Any]]  # {t, scenario, what}, seconds from the day's start
    verdicts: list[dict[str, Any]]  # scenario, criterion, passed, measured
    mttr: float | None
    availability: float | None
    findings: list[str]
    notes: list[dict[str, Any]]

    @property
    def passed(self) -> int:
        return sum(1 for v in self.verdicts if v["passed"] is True)

    def summary(self) -> str:
        g = self.gameday
        ran = sum(1 for s in g.scenarios if s["state"] == "done")
        return (
            f"{g.title}: {g.state}. {ran} of {len(g.scenarios)} scenario(s) ran;"
            f" {self.passed} of {len(self.verdicts)} success criteria passed."
            + (f" Mean time to recover {self.mttr:.1f} s." if self.mttr is not None else "")
            + (
                f" Availability during the faults {100 * self.availability:.1f} %."
                if self.availability is not None
                else ""
            )
        )

    def as_dict(self) -> dict[str, Any]:
        g = self.gameday
        return {
            "id": g.id,
            "title": g.title,
            "state": g.state,
            "started": g.started,
            "ended": g.ended,
            "roles": g.plan.get("roles", {}),
            "summary": self.summary(),
            "scenarios": g.scenarios,
            "criteria": self.verdicts,
            "criteria_passed": self.passed,
            "mean_time_to_recover_s": self.mttr,
            "availability": self.availability,
            "timeline": self.timeline,
            "findings": self.findings,
            "notes": self.notes,
            "runs": {k: r.as_dict() for k, r in self.runs.items()},
        }


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def build(g: StoredGameDay, journals: dict[str, dict[str, Any]]) -> DayReport:
    t0 = _at(g.started)
    runs: dict[str, figures.Report] = {}
    timeline: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    findings: list[str] = []
    notes: list[dict[str, Any]] = []
    for sc in g.scenarios:
        name = sc["name"]
        if sc.get("started"):
            timeline.append(
                {
                    "t": round(_at(sc["started"]) - t0, 1),
                    "scenario": name,
                    "what": f"started: {sc['experiment']} (run {sc['run_id']})",
                }
            )
        if sc["state"] in ("skipped", "aborted", "failed") and not sc.get("started"):
            findings.append(f"{name}: {sc['state']}: {sc.get('reason', '')}")
        journal = journals.get(sc.get("run_id") or "")
        if journal is not None:
            r = figures.build(journal)
            runs[name] = r
            base = _at(journal["start"]) - t0
            for s in r.spans:
                timeline.append(
                    {
                        "t": round(base + s.start, 1),
                        "scenario": name,
                        "what": f"{s.fault} fault on {s.agent} active",
                    }
                )
            if r.last_end is not None:
                timeline.append(
                    {"t": round(base + r.last_end, 1), "scenario": name, "what": "faults reverted"}
                )
            for p in r.probes:
                for a, _ in p.deviations:
                    timeline.append(
                        {
                            "t": round(base + a, 1),
                            "scenario": name,
                            "what": f"{p.name} out of tolerance",
                        }
                    )
            findings += [f"{name}: {f}" for f in r.findings]
            notes += [{**n, "scenario": name, "t": round(base + n["t"], 1)} for n in r.notes]
        if sc.get("ended"):
            timeline.append(
                {
                    "t": round(_at(sc["ended"]) - t0, 1),
                    "scenario": name,
                    "what": f"ended {sc.get('status') or sc['state']}",
                }
            )
        for v in sc.get("verdicts", []):
            verdicts.append({"scenario": name, **v})
            if v["passed"] is not True:
                what = "could not be judged" if v["passed"] is None else "failed"
                findings.append(f"{name}: criterion {v['criterion']!r} {what}: {v['measured']}")
    notes += [{"t": round(_at(n["at"]) - t0, 1), "scenario": "-", "by": n["by"], "text": n["text"]}
              for n in g.notes]  # fmt: skip
    ttrs = [
        p.time_to_recover
        for r in runs.values()
        for p in r.probes
        if p.time_to_recover is not None and p.deviations
    ]
    avail = [p.availability for r in runs.values() for p in r.probes if p.availability is not None]
    return DayReport(
        g,
        runs,
        sorted(timeline, key=lambda e: e["t"]),
        verdicts,
        round(statistics.fmean(ttrs), 2) if ttrs else None,
        round(statistics.fmean(avail), 4) if avail else None,
        findings,
        sorted(notes, key=lambda n: n["t"]),
    )


def html(d: DayReport) -> str:
    g = d.gameday
    roles = g.plan.get("roles") or {}
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Game day report: {escape(g.title)}</title>",
        f"<style>{render.CSS}</style></head><body>",
        f"<h1>{escape(g.title)}</h1>",
        f"<p>Game day <code>{escape(g.id)}</code>, {escape(g.started)} to"
        f" {escape(g.ended or 'now')}</p>",
        f'<section id="summary"><h2>Executive summary</h2><p>{escape(d.summary())}</p>',
        "<table><caption>Roles</caption>",
    ]
    for role, who in roles.items():
        shown = ", ".join(who) if isinstance(who, list) else str(who)
        out.append(f'<tr><th scope="row">{escape(role)}</th><td>{escape(shown)}</td></tr>')
    out.append("</table></section>")
    out.append(
        '<section id="criteria"><h2>Success criteria</h2><table><tr>'
        '<th scope="col">Scenario</th><th scope="col">Criterion</th>'
        '<th scope="col">Result</th><th scope="col">Measured</th></tr>'
    )
    for v in d.verdicts:
        result = {True: "passed", False: "FAILED", None: "not judged"}[v["passed"]]
        out.append(
            f'<tr class="criterion {result.lower().replace(" ", "-")}">'
            f"<td>{escape(v['scenario'])}</td><td>{escape(v['criterion'])}"
            f" ({escape(v['describe'])})</td><td>{result}</td>"
            f"<td>{escape(v['measured'])}</td></tr>"
        )
    out.append("</table></section>")
    out.append(
        '<section id="scenarios"><h2>Scenarios</h2><table><tr><th scope="col">Scenario'
        '</th><th scope="col">Expected</th><th scope="col">State</th>'
        '<th scope="col">Run</th><th scope="col">Time to recover</th>'
        '<th scope="col">Availability</th></tr>'
    )
    for sc in g.scenarios:
        r = d.runs.get(sc["name"])
        ttr = ", ".join(render.recovery_rows(p)[1] for p in r.probes) if r else "-"
        av = ", ".join(render.recovery_rows(p)[2] for p in r.probes) if r else "-"
        out.append(
            f"<tr><td>{escape(sc['name'])}</td><td>{escape(sc.get('expect', ''))}</td>"
            f"<td>{escape(sc['state'])} {escape(sc.get('status', ''))}</td>"
            f"<td>{escape(sc.get('run_id') or '-')}</td><td>{escape(ttr or '-')}</td>"
            f"<td>{escape(av or '-')}</td></tr>"
        )
    out.append("</table></section>")
    out.append(
        '<section id="timeline"><h2>Timeline</h2><table><tr><th scope="col">T+</th>'
        '<th scope="col">Scenario</th><th scope="col">What</th></tr>'
    )
    out += [
        f"<tr><td>{e['t']:.0f} s</td><td>{escape(e['scenario'])}</td>"
        f"<td>{escape(e['what'])}</td></tr>"
        for e in d.timeline
    ]
    out.append("</table></section>")
    out.append('<section id="charts"><h2>Probes</h2>')
    for sc_name, r in d.runs.items():
        end = max([r.duration or 0.0, *(p.samples[-1][0] for p in r.probes if p.samples)])
        for i, p in enumerate(r.probes):
            out.append(
                f"<figure><figcaption>{escape(sc_name)}: {escape(p.name)}</figcaption>"
                f"{svg.chart(p, r.spans, r.marks, end, f'{sc_name}-{i}')}</figure>"
            )
    out.append("</section>")
    out.append('<section id="findings"><h2>Findings</h2><ul>')
    out += [f"<li>{escape(f)}</li>" for f in d.findings] or ["<li>None.</li>"]
    out.append('</ul></section><section id="notes"><h2>Notes</h2><ul>')
    out += [
        f"<li>T+{n['t']:.0f}s ({escape(n['scenario'])}) {escape(n['by'])}: {escape(n['text'])}</li>"
        for n in d.notes
    ] or ["<li>None.</li>"]
    out.append(
        '</ul></section><section id="actions"><h2>Action items</h2>'
        '<ul class="actions"><li></li><li></li><li></li></ul></section></body></html>'
    )
    return "\n".join(out)


def markdown(d: DayReport) -> str:
    g = d.gameday
    lines = [
        f"# {g.title}",
        "",
        f"Game day `{g.id}`, {g.started} to {g.ended or 'now'}",
        "",
        "## Executive summary",
        "",
        d.summary(),
        "",
        "## Success criteria",
        "",
        "| Scenario | Criterion | Result | Measured |",
        "|---|---|---|---|",
    ]
    for v in d.verdicts:
        result = {True: "passed", False: "FAILED", None: "not judged"}[v["passed"]]
        lines.append(f"| {v['scenario']} | {v['criterion']} | {result} | {v['measured']} |")
    lines += ["", "## Timeline", "", "| T+ | Scenario | What |", "|---|---|---|"]
    lines += [f"| {e['t']:.0f} s | {e['scenario']} | {e['what']} |" for e in d.timeline]
    lines += ["", "## Findings", ""] + ([f"- {f}" for f in d.findings] or ["- None."])
    lines += ["", "## Notes", ""]
    lines += [f"- T+{n['t']:.0f}s ({n['scenario']}) {n['by']}: {n['text']}" for n in d.notes]
    lines += ["", "## Action items", "", "- [ ] ", ""]
    return "\n".join(lines)


def as_json(d: DayReport) -> str:
    return json.dumps(d.as_dict(), indent=2, default=str)
