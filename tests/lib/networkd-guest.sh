#!/usr/bin/env bash
# Runs systemd-networkd as a guest's network manager inside the current network
# namespace, in a private mount namespace, with the .network files of DIR only:
#   ip netns exec GUEST unshare -m --propagation private bash networkd-guest.sh DIR SECONDS
# tmpfs over /run/systemd, /etc/systemd/network and /run/udev (nothing of the host's
# is read or changed); every link is marked initialised in a fake udev database,
# since no udev runs in the namespace. networkd runs SECONDS at most; SIGTERM to this
# script stops it at once.
set -eu
dir=$1 seconds=$2
if [ ! -d /run/udev ]; then
  # A host without udev (a container): a private /run for what networkd needs.
  mount -t tmpfs tmpfs /run
  mkdir -p /run/systemd /run/udev
fi
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/network /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
mount -t tmpfs tmpfs /etc/systemd/network
cp "$dir"/*.network /run/systemd/network/
# Drop-in directories (NAME.network.d/*.conf), if any.
for d in "$dir"/*.network.d; do [ -d "$d" ] && cp -r "$d" /run/systemd/network/; done
mount -t tmpfs tmpfs /run/udev
mkdir -p /run/udev/data
for i in /sys/class/net/*; do printf 'I:1\n' >"/run/udev/data/n$(cat "$i/ifindex")"; done
timeout "$seconds" /lib/systemd/systemd-networkd &
pid=$!
trap 'kill "$pid" 2>/dev/null' TERM INT
wait "$pid" || true
wait "$pid" 2>/dev/null || true
