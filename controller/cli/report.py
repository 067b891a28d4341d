"""`brownout report RUN [--format html|md|json] [-o FILE]`: a run's report
from the history (or the server's, with --server): one self-contained HTML
file, Markdown with its charts as SVG files beside it, or JSON figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.cli import argtypes
from controller.reports import figures, render
from controller.store import NotFound, open_store

if TYPE_CHECKING:  # remote imports the commands, which import this module
    from controller.cli.remote import Client

FORMATS = ("html", "md", "json")


def add_parser(sub: Any, data_dir_option: Any) -> None:
    p = sub.add_parser("report", help="a run's report: HTML, Markdown or JSON")
    p.add_argument("run_id", type=argtypes.text, metavar="RUN")
    data_dir_option(p)
    p.add_argument("--format", choices=FORMATS, default="html")
    p.add_argument(
        "-o",
        "--output",
        type=argtypes.file_in_existing_dir,
        default=None,
        metavar="FILE",
        help="write here (Markdown: its charts beside it as FILE-probe-N.svg); default stdout",
    )


def write(journal: dict[str, Any], fmt: str, output: Path | None) -> int:
    report = figures.build(journal)
    charts: dict[str, str] = {}
    if fmt == "html":
        text = render.html(report)
    elif fmt == "json":
        text = render.as_json(report)
    else:
        stem = output.stem if output is not None else "report"
        text, charts = render.markdown(report, lambda i: f"{stem}-probe-{i}.svg")
    if output is None:
        print(text)
        if charts:
            print("brownout: the charts are written beside the file: give -o FILE", file=sys.stderr)
        return 0
    output.write_text(text)
    for name, chart in charts.items():
        (output.parent / name).write_text(chart)
    shown = ", ".join([str(output), *charts])
    print(f"wrote {shown}", file=sys.stderr)
    return 0


def main(args: argparse.Namespace) -> int:
    store = open_store(args.data_dir, args.database)
    try:
        _, journal = store.history.get(args.run_id)
    except NotFound as exc:
        print(f"brownout: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return write(journal, args.format, args.output)


def remote(c: Client, args: argparse.Namespace) -> int:
    return write(c.call("GET", f"/api/v1/runs/{args.run_id}"), args.format, args.output)
