"""The agent's YAML config file (/etc/brownout/agent.yaml).

Its keys mirror the flags; precedence is flag > BROWNOUT_* environment >
file > built-in default (agent.config.resolve). Unknown keys are errors, so a
typo never silently leaves a default (such as a plaintext listener) in place.
"""

from __future__ import annotations

from pathlib import Path

import yaml

SCALARS = {
    "listen",
    "state_dir",
    "metrics_listen",
    "heartbeat_port",
    "log_level",
    "max_fault_duration",
    "max_lease_ttl",
    "min_lease_ttl",
    "memory_reserve",
    "disk_reserve",
    "max_active_faults",
    "process_match_cap",
    "max_clock_offset",
    "oom_score_adj",
}
LISTS = {"operators", "viewers", "process_denylist"}
TLS_KEYS = {"cert", "key", "client_ca"}
ALL_KEYS = SCALARS | LISTS | {"labels", "tls", "insecure_allow_remote"}


class ConfigFileError(ValueError):
    pass


def load(path: Path) -> dict[str, str]:
    """Option values (dest -> text, as a flag would give it) from the file;
    agent.config.resolve() parses and checks them."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}: must be a mapping of keys to values")
    unknown = sorted(set(data) - ALL_KEYS)
    if unknown:
        raise ConfigFileError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL_KEYS))}"
        )
    out: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key in SCALARS:
            if isinstance(value, dict | list | bool):
                raise ConfigFileError(f"{path}: {key} must be a single value")
            out[key] = str(value)
        elif key in LISTS:
            items = value if isinstance(value, list) else [value]
            out[key] = ",".join(str(v) for v in items)
        elif key == "labels":
            if not isinstance(value, dict):
                raise ConfigFileError(f"{path}: labels must be a mapping")
            out[key] = ",".join(f"{k}={v}" for k, v in value.items())
        elif key == "tls":
            if not isinstance(value, dict) or set(value) - TLS_KEYS:
                raise ConfigFileError(f"{path}: tls takes only {', '.join(sorted(TLS_KEYS))}")
            out.update({f"tls_{k}": str(v) for k, v in value.items() if v is not None})
        elif key == "insecure_allow_remote":
            if not isinstance(value, bool):
                raise ConfigFileError(f"{path}: insecure_allow_remote must be true or false")
            out[key] = "1" if value else "0"
    return out
