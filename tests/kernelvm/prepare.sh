#!/usr/bin/env bash
# Prepare the kernel-VM tier: QEMU, busybox, kmod, virtme-ng and Debian's
# distro kernel (which has sch_netem). Idempotent; the kernel package is
# cached in kernelvm-cache/ (ignored by git) and its modules are installed
# under /lib/modules, where the guest (sharing this root fs) loads them.
# Prints the path of the guest kernel on its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-.venv/bin/python}
CACHE=${KERNELVM_CACHE:-$PWD/kernelvm-cache}
VNG_VERSION=1.42
export DEBIAN_FRONTEND=noninteractive

need=()
for pkg in qemu-system-x86 busybox-static kmod iproute2 iputils-ping; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
updated=0
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq
    updated=1
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! "$PY" -m pip show virtme-ng 2>/dev/null | grep -qx "Version: $VNG_VERSION"; then
    "$PY" -m pip install --quiet "virtme-ng==$VNG_VERSION"
fi

# The metapackage names the current 6.1 ABI (linux-image-6.1.0-NN-amd64).
resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(resolve)
if [ -z "$pkg" ] && [ "$updated" = 0 ]; then
    apt-get update -qq
    pkg=$(resolve)
fi
if [ -z "$pkg" ]; then
    echo "cannot resolve linux-image-amd64 to a kernel package" >&2
    exit 1
fi
ver=${pkg#linux-image-}
root="$CACHE/$ver"
vmlinuz="$root/boot/vmlinuz-$ver"
if [ ! -f "$vmlinuz" ]; then
    mkdir -p "$CACHE/download"
    rm -f "$CACHE/download/${pkg}_"*.deb
    (cd "$CACHE/download" && apt-get download -qq "$pkg" 2>/dev/null)
    rm -rf "$root.tmp"
    dpkg-deb -x "$CACHE/download/${pkg}_"*.deb "$root.tmp"
    mv "$root.tmp" "$root"
    rm -f "$CACHE/download/${pkg}_"*.deb
fi
if [ ! -f "/lib/modules/$ver/modules.dep" ]; then
    mkdir -p /lib/modules
    rm -rf "/lib/modules/$ver"
    cp -a "$root/lib/modules/$ver" /lib/modules/
    depmod "$ver"
fi
echo "$vmlinuz" >"$CACHE/vmlinuz.path"
echo "$vmlinuz"
