"""One probe's chart as hand-built SVG (no plotting library: a few hundred
lines of text, tested): the value against time, the tolerance band, the
fault spans shaded per ramp step, and aborts and notes marked.

Readable in grey scale: the band and each step's spans are hatched at their
own angle as well as shaded, samples in tolerance are dots and those out of
it are crosses, and every shape is labelled in text.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from controller.reports.figures import ProbeFigures, Span

W, H = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44
MAX_POINTS = 1500  # beyond this, the line is drawn per pixel column (min and max)
STEP_FILLS = ("#c8c8c8", "#9a9a9a", "#e0e0e0", "#7a7a7a")
STEP_ANGLES = (45, -45, 0, 90)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def chart(p: ProbeFigures, spans: list[Span], marks: list[dict[str, Any]], end: float,
          chart_id: str) -> str:  # fmt: skip
    rows = p.samples
    numeric = [r for r in rows if r[1] is not None]
    as_met = not numeric  # text probes: plot in tolerance (1) or not (0)
    values = [float(r[2]) if as_met else r[1] for r in (rows if as_met else numeric)]
    tol = p.tolerance
    lows = [v for v in (tol.get("low"), tol.get("high")) if v is not None and not as_met]
    lo = min([*values, *lows], default=0.0)
    hi = max([*values, *lows], default=1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.1
    lo, hi = (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad  # no negative axis for >= 0
    t_end = max(end, max((r[0] for r in rows), default=0.0), 1e-3)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(t: float) -> float:
        return round(LEFT + pw * max(0.0, min(t, t_end)) / t_end, 1)

    def y(v: float) -> float:
        return round(TOP + ph * (1 - (min(max(v, lo), hi) - lo) / (hi - lo)), 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="probe-chart" id="{chart_id}"'
        f' data-probe="{escape(p.name)}" viewBox="0 0 {W} {H}" width="{W}" height="{H}"'
        f' role="img" aria-labelledby="{chart_id}-t {chart_id}-d">',
        f'<title id="{chart_id}-t">{escape(p.name)}: value against time</title>',
        f'<desc id="{chart_id}-d">{len(rows)} samples; tolerance {escape(tol.get("describe", ""))};'
        f" {len(spans)} fault(s) shaded by ramp step</desc>",
        "<defs>",
    ]
    for i, angle in enumerate(STEP_ANGLES):
        out.append(
            f'<pattern id="{chart_id}-h{i}" patternUnits="userSpaceOnUse" width="6" height="6"'
            f' patternTransform="rotate({angle})"><line x1="0" y1="0" x2="0" y2="6"'
            ' stroke="#555" stroke-width="1"/></pattern>'
        )
    out.append(
        f'<pattern id="{chart_id}-band" patternUnits="userSpaceOnUse" width="4" height="4">'
        '<circle cx="2" cy="2" r="0.7" fill="#444"/></pattern></defs>'
    )
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#000"/>')
    # Fault spans, merged per step.
    steps: dict[int, list[float]] = {}
    for s in spans:
        a, z = s.start, s.end if s.end is not None else t_end
        cur = steps.setdefault(s.step, [a, z])
        cur[0], cur[1] = min(cur[0], a), max(cur[1], z)
    for n, (step, (a, z)) in enumerate(sorted(steps.items())):
        k = n % len(STEP_FILLS)
        label = f"step {step + 1}" if step >= 0 else "faults"
        out.append(
            f'<g class="fault-span" data-step="{step + 1}"><rect x="{x(a)}" y="{TOP}"'
            f' width="{max(1.0, x(z) - x(a))}" height="{ph}" fill="{STEP_FILLS[k]}"'
            f' fill-opacity="0.45"/><rect x="{x(a)}" y="{TOP}" width="{max(1.0, x(z) - x(a))}"'
            f' height="{ph}" fill="url(#{chart_id}-h{k})" fill-opacity="0.35"/>'
            f'<text x="{x(a) + 3}" y="{TOP + 12 + 12 * (n % 2)}" font-size="10">'
            f"{escape(label)} faults</text></g>"
        )
    # The tolerance band.
    if not as_met and (tol.get("low") is not None or tol.get("high") is not None):
        top = y(tol["high"]) if tol.get("high") is not None else TOP
        bottom = y(tol["low"]) if tol.get("low") is not None else TOP + ph
        height = max(bottom - top, 2.0)
        out.append(
            f'<g class="tolerance-band"><rect x="{LEFT}" y="{top}" width="{pw}" height="{height}"'
            f' fill="url(#{chart_id}-band)" stroke="#000" stroke-dasharray="6 3"/>'
            f'<text x="{W - RIGHT - 4}" y="{top - 3}" font-size="10" text-anchor="end">'
            f"tolerance {escape(tol.get('describe', ''))}</text></g>"
        )
    # Axes.
    for v in _ticks(lo, hi) if not as_met else [0.0, 1.0]:
        label = ("in tolerance" if v else "out") if as_met else _fmt(v)
        out.append(
            f'<line x1="{LEFT - 4}" y1="{y(v)}" x2="{LEFT}" y2="{y(v)}" stroke="#000"/>'
            f'<text x="{LEFT - 6}" y="{y(v) + 3}" font-size="10" text-anchor="end">{label}</text>'
        )
    for t in _ticks(0, t_end, 6):
        out.append(
            f'<line x1="{x(t)}" y1="{TOP + ph}" x2="{x(t)}" y2="{TOP + ph + 4}" stroke="#000"/>'
            f'<text x="{x(t)}" y="{TOP + ph + 16}" font-size="10" text-anchor="middle">'
            f"T+{_fmt(t)}s</text>"
        )
    out.append(
        f'<text x="{W - RIGHT}" y="{H - 6}" font-size="11" text-anchor="end">'
        "seconds since the run started</text>"
    )
    # The value.
    plotted = rows if as_met else numeric
    pts = [(r[0], float(r[2]) if as_met else r[1], bool(r[2])) for r in plotted]
    if len(pts) > MAX_POINTS:
        line = _columns(pts, x)
        shown = [p for p in pts if not p[2]][:MAX_POINTS]
    else:
        line = [(x(t), v) for t, v, _ in pts]
        shown = pts
    for part in _broken(line, {round(x(r[0]), 1) for r in rows if r[1] is None}, as_met):
        out.append(
            '<polyline class="value" fill="none" stroke="#000" stroke-width="1.2" points="'
            + " ".join(f"{a},{y(v)}" for a, v in part)
            + '"/>'
        )
    # Samples with no value (a timeout, a refused connection) are crosses on
    # the bottom edge: out of tolerance, and never silently missing.
    blank = [r for r in rows if r[1] is None and not r[2]] if not as_met else []
    for r in blank[:MAX_POINTS]:
        cx, cy = x(r[0]), TOP + ph - 5.0
        out.append(
            f'<path class="sample out none" d="M{cx - 3},{cy - 3}L{cx + 3},{cy + 3}'
            f'M{cx - 3},{cy + 3}L{cx + 3},{cy - 3}" stroke="#000" stroke-width="1.6"/>'
        )
    if blank:
        out.append(
            f'<text x="{LEFT}" y="{H - 6}" font-size="10">'
            "&#215; on the bottom edge: no value (error or timeout)</text>"
        )
    for t, v, met in shown:
        cx, cy = x(t), y(v)
        if met:
            out.append(f'<circle class="sample met" cx="{cx}" cy="{cy}" r="2.2" fill="#000"/>')
        else:
            out.append(
                f'<path class="sample out" d="M{cx - 3},{cy - 3}L{cx + 3},{cy + 3}'
                f'M{cx - 3},{cy + 3}L{cx + 3},{cy - 3}" stroke="#000" stroke-width="1.6"/>'
            )
    # Aborts, the kill switch, lost leases and notes.
    n_note = 0
    for m in marks:
        if m["kind"] == "note":
            n_note += 1
            label, dash = f"note {n_note}", "2 3"
        else:
            label, dash = m["kind"].replace("_", " "), "8 3"
        out.append(
            f'<g class="mark {escape(m["kind"])}"><line x1="{x(m["t"])}" y1="{TOP}"'
            f' x2="{x(m["t"])}" y2="{TOP + ph}" stroke="#000" stroke-width="1.4"'
            f' stroke-dasharray="{dash}"/><text x="{x(m["t"]) + 2}" y="{TOP - 4}"'
            f' font-size="10">{escape(label)}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _broken(
    line: list[tuple[float, float]], gaps: set[float], as_met: bool
) -> list[list[tuple[float, float]]]:
    """The value's line cut wherever a sample had no value: a line across a
    gap would draw values nobody measured."""
    if as_met or not gaps:
        return [line] if line else []
    parts: list[list[tuple[float, float]]] = [[]]
    edges = sorted(gaps)
    for px, v in line:
        if parts[-1] and any(parts[-1][-1][0] < g < px for g in edges):
            parts.append([])
        parts[-1].append((px, v))
    return [p for p in parts if p]


def _columns(pts: list[tuple[float, float, bool]], x: Any) -> list[tuple[float, float]]:
    """A long series as each pixel column's min and max, in time order."""
    cols: dict[float, list[float]] = {}
    for t, v, _ in pts:
        col = cols.setdefault(round(x(t)), [v, v])
        col[0], col[1] = min(col[0], v), max(col[1], v)
    out: list[tuple[float, float]] = []
    for px, (a, b) in sorted(cols.items()):
        out += [(px, a), (px, b)] if a != b else [(px, a)]
    return out
