#!/usr/bin/env bash
# Installs what virt-l3's demo and tests need on Debian 12, only when missing.
# Usage: scripts/deps.sh [demo|test|bench|package|fuzz]
set -euo pipefail
what=${1:-test}
# Every package a command of the scripts, tests and suites comes from; a fresh Debian 12
# (a minimal or cloud image) lacks most of them: procps (sysctl, pgrep), systemd
# (systemd-networkd for tests/guest_config.rs, systemd-analyze), man-db, a C linker.
# util-linux (unshare, nsenter, setsid, flock) is essential, listed for the record.
# gcc + libc6-dev: rustc links with cc.
# nftables: virt-l3's tables (nft), in the demo and the tests.
need=(iproute2 jq nftables util-linux procps gcc libc6-dev)
case "$what" in
  demo) ;;
  # The real guest of tests/lib/guest.sh is not installed: its kernel (linux-image-cloud-amd64's
  # versioned package) and busybox-static are `apt-get download`ed into target/guest.
  # g++: cargo-fuzz builds libFuzzer (tests/suites/fuzz.sh); rpm, dpkg-dev, man-db:
  # tests/suites/package.sh (cargo-deb runs dpkg-shlibdeps, the suite renders the man page).
  test) need+=(libvirt-daemon-system libvirt-clients qemu-system-x86 bird2 frr python3 python3-scapy tcpdump
    libxml2-utils ebtables iptables iputils-ping netplan.io cloud-init systemd groovy strace
    g++ rpm dpkg-dev man-db) ;;
  bench) need+=(hyperfine valgrind python3 python3-pyroute2 time bc) ;;
  package) need+=(rpm dpkg-dev) ;;
  fuzz) need=(gcc g++ libc6-dev) ;;
esac
# Rust: the machine's toolchain, else rustup's (Debian 12's rustc is too old for the dependencies).
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: installing the Rust toolchain with rustup" >&2
  command -v curl >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl ca-certificates >/dev/null; }
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy >/dev/null
fi
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # policy-rc.d keeps the packages' daemons from starting on the host: the tests start their own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # cloud-init is installed only for its network_data.json reader (tests/guest_config.rs):
  # it must never configure this machine at boot.
  if printf '%s\n' "${missing[@]}" | grep -qx cloud-init; then mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled; fi
fi
# cargo-fuzz for tests/suites/fuzz.sh (libFuzzer targets in fuzz/).
if [ "$what" = test ] || [ "$what" = fuzz ]; then
  command -v cargo-fuzz >/dev/null 2>&1 || { echo "deps: installing cargo-fuzz" >&2; cargo install cargo-fuzz --locked --quiet; }
fi
