#!/usr/bin/env bash
# Build an emulated Raspberry Pi 4 Python: an arm64 Debian root folder plus aarch64 wheels.
#
#   edge/pi/setup_pi_root.sh [DEST]          (default build/pi-root; cached: rerun is instant)
#
# Result: DEST/root (Debian bookworm arm64, python3 + numpy), DEST/site (ai-edge-litert and
# its pure/aarch64 dependencies) and DEST/run-python, which runs the aarch64 Python under
# qemu-user as a Cortex-A72:  DEST/run-python -m edge.runner run BUNDLE --example
# Needs qemu-user-static and debootstrap (make system-deps), network access to the Debian
# mirror of /etc/apt/sources.list(.d) and to PyPI. No root, no VM, no Docker, no binfmt.
# Exit status 3 means a tool is missing (tests skip on it); anything else non-zero is a failure.
set -euo pipefail

DEST=${1:-build/pi-root}
PIP=${PIP:-.venv/bin/python -m pip}
SUITE=${PI_SUITE:-bookworm}
LITERT=${PI_LITERT:-ai-edge-litert==2.3.0}

if [ -e "$DEST/.complete" ]; then
  exit 0
fi
for tool in qemu-aarch64-static debootstrap dpkg; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "missing $tool: run 'make system-deps' as root (apt-get install qemu-user-static debootstrap)" >&2
    exit 3
  fi
done

# The Debian mirror this machine already uses (one-line or deb822 format).
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null | grep -v security | awk '{print $2}' | head -n1 || true)
fi
if [ -z "$mirror" ]; then
  mirror=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | awk '{print $2}' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$(dirname "$DEST")"
work=$(mktemp -d "$DEST.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "pi-root: debootstrap $SUITE arm64 from $mirror" >&2
# --foreign downloads and unpacks without running arm64 maintainer scripts; the packages are
# then extracted with dpkg -x, which is all a Python needs. (Never install python3:arm64 into
# the host: it removes host packages.)
debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,python3-numpy \
  "$SUITE" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
for deb in "$work"/root/var/cache/apt/archives/*.deb; do
  dpkg -x "$deb" "$work/root"
done
rm -f "$work"/root/var/cache/apt/archives/*.deb
lib="$work/root/usr/lib/aarch64-linux-gnu"
ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"

pyver=$(basename "$(ls -d "$work"/root/usr/lib/python3.[0-9]* | sort -V | tail -n1)")
abi="cp${pyver#python}"; abi=${abi/./}
echo "pi-root: aarch64 wheels for $pyver ($LITERT)" >&2
platforms="--platform manylinux2014_aarch64"
for g in 17 24 27 28 31 34 35 36; do platforms="$platforms --platform manylinux_2_${g}_aarch64"; done
# shellcheck disable=SC2086
$PIP install --quiet --target "$work/site" $platforms \
  --python-version "${pyver#python}" --implementation cp --abi "$abi" --abi abi3 --abi none \
  --only-binary=:all: --no-deps \
  "$LITERT" flatbuffers backports.strenum tqdm typing-extensions protobuf "ml_dtypes<0.5"

# ai_edge_litert crashes under qemu-user unless /proc/cpuinfo looks like an ARM CPU; qemu's -L
# redirects /proc/cpuinfo into the sysroot, so give it a Raspberry Pi 4's.
mkdir -p "$work/root/proc"
: >"$work/root/proc/cpuinfo"
for cpu in 0 1 2 3; do
  cat >>"$work/root/proc/cpuinfo" <<CPU
processor	: $cpu
BogoMIPS	: 108.00
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd08
CPU revision	: 3

CPU
done
cat >>"$work/root/proc/cpuinfo" <<'CPU'
Hardware	: BCM2835
Model		: Raspberry Pi 4 Model B Rev 1.4
CPU

final=$(cd "$(dirname "$DEST")" && pwd)/$(basename "$DEST")
cat >"$work/run-python" <<RUN
#!/bin/sh
# The emulated Raspberry Pi 4's Python (aarch64 under qemu-user, Cortex-A72).
here=\$(dirname "\$0")
export QEMU_CPU=cortex-a72
export PYTHONPATH="\${PYTHONPATH:+\$PYTHONPATH:}\$here/site"
exec qemu-aarch64-static -L "\$here/root" "\$here/root/usr/bin/$pyver" "\$@"
RUN
chmod +x "$work/run-python"

echo "pi-root: smoke test" >&2
"$work/run-python" -c "import platform, numpy, ai_edge_litert.interpreter; print('pi-root ok', platform.machine(), numpy.__version__)"

rm -rf "$final"
touch "$work/.complete"
mv "$work" "$final"
trap - EXIT
