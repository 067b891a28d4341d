#!/usr/bin/env bash
# Lays Brownout out as infrastructure: a venv under /opt/brownout, the systemd
# unit, and /etc/brownout/agent.yaml (kept if it already exists).
# Usage: systemd/install.sh [--root DIR]   (DIR: stage under another root, for packaging)
set -euo pipefail
cd "$(dirname "$0")/.."
root=""
if [ "${1:-}" = "--root" ]; then root="${2:?--root needs a directory}"; fi
python="${PYTHON:-python3}"

venv="$root/opt/brownout/venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet .
install -d -m 0755 "$root/opt/brownout/docs"
cp -r docs/. "$root/opt/brownout/docs/"
install -D -m 0644 systemd/brownout-agent.service "$root/etc/systemd/system/brownout-agent.service"
if [ ! -e "$root/etc/brownout/agent.yaml" ]; then
    install -D -m 0640 systemd/agent.yaml "$root/etc/brownout/agent.yaml"
fi
if [ -z "$root" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed; start with: systemctl enable --now brownout-agent"
else
    echo "installed under ${root:-/}"
fi
