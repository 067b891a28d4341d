#!/usr/bin/env bash
# Debian packages the test tiers use, installed when missing (as root), plus
# any named on the command line (e.g. `stress-ng` for the benchmarks).
# e2fsprogs: mkfs for the loop filesystems the disk and IO host tests mount.
# nftables, iputils-ping, iproute2: the network host tests check the agent's work
#   from outside with nft, ping, ip and tc.
# iperf3: bandwidth faults are measured with real TCP transfers.
# prometheus: a real Prometheus scrapes agents for the PromQL stop-condition test.
# systemd: systemd-analyze verifies the unit file.
# chromium, chromium-driver: the console is tested in a real headless browser.
# runc, busybox-static: real containers (an OCI bundle of busybox) as fault targets.
# prometheus-alertmanager: a real Alertmanager for the schedules' incident gate.
# postgresql: a real PostgreSQL for the shared store (tests/postgres.py starts its own
#   server in a temp dir; the package's default cluster is not created).
set -euo pipefail
pkgs=(iproute2 procps e2fsprogs nftables iputils-ping iperf3 prometheus systemd chromium
    chromium-driver runc busybox-static prometheus-alertmanager postgresql "$@")
need=()
for pkg in "${pkgs[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ "${#need[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]}; install them as root (tests that need them skip)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# No default cluster (and no server on port 5432) when postgresql is installed.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/brownout-tests.conf
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
