"""The rooms of the house, held by their imports (read from the source, so a
new module is covered the day it is added).

Each rule names itself and says in one line how to fix a violation.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str  # the imported module, absolute
    names: tuple[str, ...] = ()

    def __str__(self) -> str:
        what = f"from {self.module} import {', '.join(self.names)}" if self.names else self.module
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}: {what}"


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "proto" if path.is_relative_to(ROOT / "proto") else ROOT)
    return ".".join(rel.with_suffix("").parts[:-1])


def room_files(room: str) -> list[Path]:
    base = ROOT / ("proto" if room.startswith("brownout") else "") / Path(*room.split("."))
    files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    assert files, f"no modules in {room}"
    return files


def imports(room: str) -> Iterator[Import]:
    """Every import in the modules under room (a dotted package, e.g. agent.core)."""
    for path in room_files(room):
        yield from scan(path, package_of(path))


def scan(path: Path, package: str) -> Iterator[Import]:
    """The imports of one module of package, anywhere in it, relative ones resolved."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")
                kept = parts[: len(parts) - node.level + 1]
                module = ".".join([*kept, module]).strip(".")
            yield Import(path, node.lineno, module, tuple(a.name for a in node.names))


def within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(room: str, *forbidden: str) -> list[str]:
    return [str(i) for i in imports(room) if within(i.module, *forbidden)]


def test_rule_kernel_speaks_plain_values() -> None:
    """agent.kernel never sees the wire format, the fault model or domain errors.
    Fix: return plain values and raise OSError, ValueError or kernel.errors.Gone;
    let the injector (agent.faults) translate."""
    bad = violations(
        "agent.kernel", "brownout.v1", "google.protobuf", "agent.faults", "agent.core", "agent.api"
    )
    assert not bad, "\n".join(bad)


def module_file(module: str) -> Path | None:
    """The source of a project module (agent.*, controller.*, brownout.*), else None."""
    base = ROOT / "proto" if within(module, "brownout") else ROOT
    if not within(module, "agent", "controller", "brownout"):
        return None
    stem = base / Path(*module.split("."))
    for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reach(room: str) -> Iterator[tuple[Import, list[str]]]:
    """Every import made by room's modules or by any project module they import,
    transitively, with the chain of modules that led to it."""
    seen: set[Path] = set()
    todo: list[tuple[Path, list[str]]] = [(p, []) for p in room_files(room)]
    while todo:
        path, chain = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for imp in scan(path, package_of(path)):
            yield imp, chain
            names = [imp.module, *(f"{imp.module}.{n}" for n in imp.names)]
            for name in names:
                found = module_file(name)
                if found is not None:
                    todo.append((found, [*chain, name]))


def transitive_violations(room: str, *forbidden: str) -> list[str]:
    return sorted(
        {
            f"{imp}" + (f" (through {' -> '.join(chain)})" if chain else "")
            for imp, chain in reach(room)
            if within(imp.module, *forbidden)
        }
    )


def test_rule_wire_format_lives_only_in_api() -> None:
    """agent.core works on the domain model; specs and targets pass through it opaquely,
    also through what it imports (the shared package's kinds table is wire-typed).
    Fix: convert in agent/api/convert.py and hand the core plain values."""
    bad = transitive_violations("agent.core", "brownout.v1", "google.protobuf", "grpc", "agent.api")
    assert not bad, "\n".join(bad)


def test_rule_the_core_runs_injectors_without_knowing_them() -> None:
    """agent.core holds the Injector contract (agent/core/injector.py); the kinds in
    agent.faults implement it and the daemon hands the core a registry of them.
    Fix: depend on the contract, and wire concrete injectors in agent/daemon.py."""
    bad = violations("agent.core", "agent.faults")
    assert not bad, "\n".join(bad)


def test_rule_the_store_knows_only_its_records() -> None:
    """controller.store (the one database) serves the runner, the CLI and the
    service, so it imports none of them, nor the agents' clients.
    Fix: pass plain values (a journal dict, names) in; return store records."""
    bad = violations(
        "controller.store",
        "controller.experiments", "controller.service", "controller.cli", "controller.agents",
    )  # fmt: skip
    assert not bad, "\n".join(bad)


def test_rule_the_controller_rooms_never_reach_back_into_the_cli() -> None:
    """The CLI is the outermost room: runner, agents, service and fault specs never
    import it, so `brownout serve` and `brownout run` share code only downward.
    Fix: move what both need into brownout/faultspecs, experiments or agents."""
    bad = [
        *violations("controller.experiments", "controller.cli"),
        *violations("controller.agents", "controller.cli"),
        *violations("controller.service", "controller.cli"),
        *violations("brownout.faultspecs", "controller.cli", "argparse"),
        *violations("controller.store", "controller.cli"),
    ]
    assert not bad, "\n".join(bad)


def test_rule_controller_shares_code_with_the_agent_only_through_brownout() -> None:
    """The controller imports nothing from the agent, nor the agent from the controller,
    and neither program imports the tests.
    Fix: move what both need into proto/brownout/ (units, kinds, addresses, version)."""
    bad = violations("controller", "agent", "tests") + violations("agent", "controller", "tests")
    assert not bad, "\n".join(bad)


def test_rule_the_shared_package_depends_on_neither_program() -> None:
    """brownout is the common ground: it imports neither the agent nor the controller.
    Fix: keep program-specific code in its program; share only plain helpers."""
    bad = violations("brownout", "agent", "controller")
    assert not bad, "\n".join(bad)


# Standard modules that reach the system (processes, files, sockets, the kernel).
SYSTEM_MODULES = (
    "os",
    "ctypes",
    "subprocess",
    "socket",
    "fcntl",
    "mmap",
    "select",
    "signal",
    "shutil",
    "resource",
    "tempfile",
    "psutil",
    "pyroute2",
)
# Path methods that read or change the filesystem.
PATH_IO = {
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "exists",
    "is_dir",
    "is_file",
    "stat",
    "unlink",
    "mkdir",
    "rmdir",
    "iterdir",
    "resolve",
    "touch",
    "glob",
    "rglob",
}


def test_rule_faults_touch_the_system_only_through_the_kernel_layer() -> None:
    """An injector is logic: every system call goes through agent.kernel.
    Fix: add (or use) a function in agent/kernel/ and call that."""
    bad = violations("agent.faults", *SYSTEM_MODULES)
    for path in sorted((ROOT / "agent" / "faults").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name) and f.id == "open":
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: open()")
            if isinstance(f, ast.Attribute) and f.attr in PATH_IO:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{f.attr}()")
    assert not bad, "\n".join(bad)


def test_rule_workers_run_on_the_standard_library_alone() -> None:
    """Workers are forked by a server started with -S (no site packages): they
    import only the standard library and agent.workers.
    Fix: pass what a worker needs on its command line; keep the logic in agent.workers."""
    stdlib = sys.stdlib_module_names
    bad = [
        str(i)
        for i in imports("agent.workers")
        if i.module.split(".")[0] not in stdlib
        and not within(i.module, "agent.workers")
        and i.module != "__future__"
    ]
    assert not bad, "\n".join(bad)


def test_rule_the_dns_answerer_stands_alone() -> None:
    """The DNS answerer is a process of its own that parses DNS with dnslib: it
    reaches only the standard library, dnslib, the workers' start-up, libc and
    the shared name patterns,
    never the agent's core, its wire format or gRPC (also transitively).
    Fix: pass what it needs on its command line; keep the logic in agent.dnsanswer."""
    stdlib = sys.stdlib_module_names
    allowed = (
        "agent.dnsanswer",
        "agent.workers",
        "agent.kernel.libc",
        "brownout.dnsnames",
        "dnslib",
    )
    bad = sorted(
        f"{imp}" + (f" (through {' -> '.join(chain)})" if chain else "")
        for imp, chain in reach("agent.dnsanswer")
        if imp.module.split(".")[0] not in stdlib
        and imp.module != "__future__"
        and not within(imp.module, *allowed)
    )
    assert not bad, "\n".join(bad)


# Rooms that decide from values passed in (a clock, the fleet's answers, a
# journal) and act on nothing: the service (or the CLI) reads and acts. Each:
# what it may not reach beyond the service, agent clients, CLI and HTTP, and
# how to fix a break.
LOGIC_ROOMS = {
    "controller.schedules": (
        ("controller.store",),
        "the schedules decide when and whether; pass the clock, the windows and the counts"
        " in, and act in controller/service",
    ),
    "controller.monkey": (
        ("controller.store",),
        "the monkey decides which groups lose a member and when; pass the groups, the last"
        " kills and the clock in, and act in controller/service",
    ),
    "controller.practice": (
        ("controller.store",),
        "the maturity model weighs facts on a given day; pass the runs, kills and game days"
        " in, and read the store in controller/service",
    ),
    "controller.reports": (
        ("controller.store",),
        "a report is built from a journal alone, so the CLI, the console and a saved journal"
        " agree; fetch the journal in controller/cli or controller/service",
    ),
    "controller.gamedays": (
        (),
        "the plan, its criteria and the day's report are logic; pass the figures and"
        " journals in, and run the day in controller/service",
    ),
}


@pytest.mark.parametrize("room", sorted(LOGIC_ROOMS))
def test_rule_logic_rooms_reach_no_service_store_agent_cli_or_http(room: str) -> None:
    also, fix = LOGIC_ROOMS[room]
    bad = transitive_violations(
        room, "controller.service", "controller.agents", "controller.cli", *also,
        "starlette", "uvicorn", "grpc",
    )  # fmt: skip
    assert not bad, f"{room}: {fix}\n" + "\n".join(bad)


def test_rule_the_http_stack_stays_in_the_service() -> None:
    """The service (controller.service) is the only room that speaks HTTP; the runner
    and the agent clients know nothing of it, so `brownout run` needs no server.
    Fix: put routes and HTTP handling in controller/service and call the runner from there."""
    http = ("starlette", "uvicorn", "jinja2", "controller.service")
    bad = [
        *violations("controller.experiments", *http),
        *violations("controller.agents", *http),
        *violations("agent", "starlette", "uvicorn", "jinja2"),
    ]
    assert not bad, "\n".join(bad)


def test_rules_catch_what_they_claim_to(tmp_path: Path) -> None:
    """The scan sees an import inside a function and resolves a relative one."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from brownout.v1 import pb\nfrom ..core import errors\n")
    assert {i.module for i in scan(sample, "agent.kernel")} == {"brownout.v1", "agent.core"}
    assert within("brownout.v1.agent_pb2", "brownout.v1")
    assert not within("brownout.version", "brownout.v1")


def test_transitive_rule_follows_imports_through_other_modules() -> None:
    """A room that reaches the wire format only through another module is caught,
    and the chain that led there is named."""
    # agent.core.limits imports no stubs itself; the chain from the daemon does.
    assert not violations("agent.core", "brownout.v1")
    found = transitive_violations("agent.daemon", "brownout.v1")
    assert any(" (through agent." in f for f in found), found
    assert module_file("brownout.kinds") == ROOT / "proto" / "brownout" / "kinds.py"
    assert module_file("agent.core") == ROOT / "agent" / "core" / "__init__.py"
    assert module_file("grpc") is None


EXTENSION = ROOT / "ext" / "chaostoolkit-brownout" / "chaosbrownout"


def test_rule_the_chaos_toolkit_extension_is_a_client_like_the_controller() -> None:
    """chaostoolkit-brownout reaches agents as the controller does: through the
    shared package (fault arguments, errors, the wire), the controller's agent
    client and target selection, chaoslib and the standard library; never the
    agent, nor the controller's runner, service, store or CLI. And the
    controller never imports it: `brownout run` runs its actions natively.
    Fix: move what both need into proto/brownout/ or controller/agents/."""
    allowed = (
        "brownout",
        "chaosbrownout",
        "controller.agents",
        "controller.experiments.selection",
        "chaoslib",
        "google.protobuf",
    )
    files = sorted(EXTENSION.rglob("*.py"))
    assert files
    bad = [
        str(i)
        for path in files
        for i in scan(path, "chaosbrownout")
        if i.module.split(".")[0] not in sys.stdlib_module_names
        and i.module != "__future__"
        and not within(i.module, *allowed)
    ]
    bad += violations("controller", "chaosbrownout")
    assert not bad, "\n".join(bad)
