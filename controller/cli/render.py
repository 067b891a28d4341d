"""Human-readable rendering of agent replies."""

from __future__ import annotations

from brownout.v1 import agent_pb2 as pb
from controller.agents.fleet import AgentStatus, Outcome
from controller.agents.names import kind_name, reason_name, state_name


def describe_fault(f: pb.Fault) -> str:
    applied = " ".join(f"{k}={v}" for k, v in sorted(f.applied.items()))
    line = f"fault {f.id} {state_name(f.state)} {kind_name(f.kind)}"
    if applied:
        line += f" {applied}"
    if f.end_reason:
        line += f" reason={reason_name(f.end_reason)}"
    if f.error:
        line += f" error={f.error!r}"
    return line


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def fault_table(faults: list[pb.Fault]) -> str:
    rows = [["ID", "KIND", "STATE", "LEASE", "REASON", "APPLIED"]]
    for f in faults:
        rows.append(
            [
                f.id,
                kind_name(f.kind),
                state_name(f.state),
                f.lease_id,
                reason_name(f.end_reason) if f.end_reason else "-",
                " ".join(f"{k}={v}" for k, v in sorted(f.applied.items())) or "-",
            ]
        )
    return _table(rows)


def info_text(info: pb.AgentInfo) -> str:
    lim = info.limits
    lines = [
        f"version      {info.version}",
        f"hostname     {info.hostname}",
        f"boot id      {info.boot_id}",
        f"labels       {', '.join(f'{k}={v}' for k, v in sorted(info.labels.items())) or '-'}",
        f"cpus         {info.cpu_count}",
        f"halted       {info.halted}",
        f"faults       {info.active_faults} active, {info.active_leases} leases",
        f"limits       max fault duration {lim.max_fault_duration.ToTimedelta()},"
        f" lease ttl {lim.min_lease_ttl.ToTimedelta()}..{lim.max_lease_ttl.ToTimedelta()}",
        "capabilities",
    ]
    for cap in info.capabilities:
        status = "available" if cap.available else f"unavailable: {cap.reason}"
        lines.append(f"  {kind_name(cap.kind):<10} {status}")
    return "\n".join(lines)


def table(rows: list[list[str]]) -> str:
    return _table(rows)


def agents_table(statuses: list[AgentStatus]) -> str:
    rows = [["ADDRESS", "REACHABLE", "HOSTNAME", "VERSION", "FAULTS", "HALTED", "LABELS", "CAPS"]]
    for st in statuses:
        info = st.info
        labels = ",".join(f"{k}={v}" for k, v in sorted(st.labels.items())) or "-"
        if info is None:
            rows.append([st.address, "no", "-", "-", "-", "-", labels, st.error])
            continue
        caps = " ".join(
            kind_name(c.kind) if c.available else f"!{kind_name(c.kind)}" for c in info.capabilities
        )
        rows.append(
            [
                st.address,
                "yes",
                info.hostname,
                info.version,
                f"{info.active_faults} ({info.active_leases} leases)",
                "latched" if info.halted else "no",
                labels,
                caps or "-",
            ]
        )
    return _table(rows)


def halt_table(outcomes: dict[str, Outcome[pb.HaltResponse]]) -> str:
    rows = [["ADDRESS", "RESULT", "REVERTED", "LATCHED", "DETAIL"]]
    for address, o in outcomes.items():
        if o.value is None:
            rows.append([address, "error", "-", "-", o.error])
            continue
        not_reverted = [f for f in o.value.faults if f.state != pb.FAULT_STATE_REVERTED]
        detail = ", ".join(f"{f.id} {state_name(f.state)}" for f in not_reverted) or "-"
        rows.append(
            [
                address,
                "ok" if not not_reverted else "partial",
                str(len(o.value.faults) - len(not_reverted)),
                "yes" if o.value.latched else "no",
                detail,
            ]
        )
    return _table(rows)
