#!/usr/bin/env bash
# Installs virt-l3 as libvirt's qemu hook from a source build (the packages do
# this themselves; see packaging/README.md).
#
#   sudo hooks/install.sh [--as-qemu] [--binary PATH] [--hooks-dir DIR]
#
# Default: /etc/libvirt/hooks/qemu.d/virt-l3, a symlink to the binary. libvirt
# (>= 6.5) runs every executable in qemu.d/ after hooks/qemu, and follows the
# symlink; virt-l3 knows it runs as a hook because its path's directory is
# `qemu.d` (or `hooks`). This is the only choice on hosts with cloudstack-agent,
# which overwrites /etc/libvirt/hooks/qemu on every install and upgrade.
# --as-qemu installs /etc/libvirt/hooks/qemu instead (hosts without another hook).
# libvirt scans hooks only at start or SIGHUP: a running libvirtd is sent SIGHUP.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=/usr/bin/virt-l3 hooks=/etc/libvirt/hooks as_qemu=0
while [ $# -gt 0 ]; do
  case "$1" in
    --as-qemu) as_qemu=1 ;;
    --binary) binary=$2; shift ;;
    --hooks-dir) hooks=$2; shift ;;
    *) echo "usage: $0 [--as-qemu] [--binary PATH] [--hooks-dir DIR]" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -x "$binary" ]; then
  [ -x target/release/virt-l3 ] || scripts/build-release.sh
  install -m 0755 target/release/virt-l3 "$binary"
fi
if [ "$as_qemu" = 1 ]; then
  if [ -e "$hooks/qemu" ] && [ "$(readlink -f "$hooks/qemu")" != "$(readlink -f "$binary")" ]; then
    echo "$hooks/qemu exists and is not virt-l3 (cloudstack-agent's?): install into qemu.d/ instead" >&2
    exit 1
  fi
  entry=$hooks/qemu
else
  entry=$hooks/qemu.d/virt-l3
fi
mkdir -p "$(dirname "$entry")"
ln -sfn "$binary" "$entry"
echo "installed $entry -> $binary"
for pidfile in /run/libvirtd.pid /run/virtqemud.pid; do
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -HUP "$(cat "$pidfile")" && echo "sent SIGHUP to $(basename "$pidfile" .pid): it rescans its hooks"
  fi
done
