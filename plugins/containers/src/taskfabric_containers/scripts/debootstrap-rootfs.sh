#!/usr/bin/env bash
# Make a minimal Debian root file system as a tarball, for taskfabric's base image.
#   debootstrap-rootfs.sh OUT.tar SUITE MIRROR [PACKAGES,COMMA,SEPARATED]
# Needs root and debootstrap (apt-get install -y debootstrap). Writes OUT.tar atomically.
set -euo pipefail
out=$1 suite=$2 mirror=$3 include=${4:-python3,python3-venv}
work=$(mktemp -d "${TMPDIR:-/tmp}/taskfabric-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include="$include" "$suite" "$work/rootfs" "$mirror" >"$work/log" 2>&1 || {
    tail -n 30 "$work/log" >&2
    exit 1
}
# Package caches and lists are not part of an image.
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
    "$work"/rootfs/var/log/* "$work"/rootfs/tmp/*
mkdir -p "$(dirname "$out")"
tar --numeric-owner -C "$work/rootfs" -cf "$out.partial" .
mv "$out.partial" "$out"
