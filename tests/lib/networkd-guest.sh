#!/usr/bin/env bash
# Runs systemd-networkd as a guest's network manager inside the current network
# namespace, in a private mount namespace, with the .network files of DIR only:
#   ip netns exec GUEST unshare -m --propagation private bash networkd-guest.sh DIR SECONDS
# A tmpfs over all of /run and over /etc/systemd/network: nothing of the host's is
# read or changed, and nothing need exist on the host (a machine without the udev
# package has no /run/udev; the directories networkd wants are made in the tmpfs).
# Every link is marked initialised in a fake udev database, since no udev runs in
# the namespace. networkd runs SECONDS at most; SIGTERM to this script stops it at once.
set -eu
dir=$1 seconds=$2
# Refuse to run outside a private mount namespace: the mounts below would be the host's.
if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then
  echo "networkd-guest.sh: run me under unshare -m (the host's mount namespace)" >&2
  exit 2
fi
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/network /run/systemd/netif /run/udev/data
chown systemd-network:systemd-network /run/systemd/netif
mount -t tmpfs tmpfs /etc/systemd/network
cp "$dir"/*.network /run/systemd/network/
# Drop-in directories (NAME.network.d/*.conf), if any.
for d in "$dir"/*.network.d; do [ -d "$d" ] && cp -r "$d" /run/systemd/network/; done
for i in /sys/class/net/*; do printf 'I:1\n' >"/run/udev/data/n$(cat "$i/ifindex")"; done
timeout "$seconds" /lib/systemd/systemd-networkd &
pid=$!
trap 'kill "$pid" 2>/dev/null' TERM INT
wait "$pid" || true
wait "$pid" 2>/dev/null || true
