#!/usr/bin/env bash
# Installs what virt-l3's demo and tests need on Debian 12, only when missing.
# Usage: scripts/deps.sh [demo|test|bench|package|fuzz|cloud-init]
# cloud-init: newer cloud-init releases than Debian's (scripts/cloud-init-tags), as
# source trees under /var/cache/virt-l3/cloud-init/TAG, run with Debian's python3 by
# tests/guest_config/ (tests/common/cloud_init.rs); VIRT_L3_CLOUD_INIT_TAGS overrides
# the tags. They come from GitHub: optional extras. `test` tries them too, within a
# time limit, and goes on without them (the tests then name them as skipped);
# `cloud-init` exits 1 when one is missing.
set -euo pipefail
what=${1:-test}
# Every package a command of the scripts, tests and suites comes from; a fresh Debian 12
# (a minimal or cloud image) lacks most of them: procps (sysctl, pgrep), systemd
# (systemd-networkd for tests/guest_config/, systemd-analyze), man-db, a C linker.
# util-linux (unshare, nsenter, setsid, flock) is essential, listed for the record.
# gcc + libc6-dev: rustc links with cc.
# nftables: virt-l3's tables (nft), in the demo and the tests.
need=(iproute2 jq nftables util-linux procps gcc libc6-dev binutils) # libc6-dev: libc.a, the release binary is static; binutils: nm, c++filt (scripts/link-hot-first.sh)
# What newer cloud-init's net-convert imports (Debian's cloud-init pulls in the rest).
cloud_init_need=(git python3 python3-yaml python3-jinja2 python3-jsonschema python3-configobj
  python3-requests python3-jsonpatch python3-netifaces cloud-init)
case "$what" in
  demo) ;;
  # The real guest of tests/lib/guest.sh is not installed: its kernel (linux-image-cloud-amd64's
  # versioned package) and busybox-static are `apt-get download`ed into target/guest.
  # g++: cargo-fuzz builds libFuzzer (tests/suites/fuzz.sh); rpm, dpkg-dev, man-db:
  # tests/suites/package.sh (cargo-deb runs dpkg-shlibdeps, the suite renders the man page).
  test) need+=(libvirt-daemon-system libvirt-clients qemu-system-x86 bird2 frr python3 python3-scapy tcpdump
    libxml2-utils ebtables iptables iputils-ping netplan.io cloud-init systemd groovy strace
    g++ rpm dpkg-dev binutils man-db "${cloud_init_need[@]}") ;;
  bench) need+=(hyperfine valgrind python3 python3-pyroute2 time bc git) ;;
  # tests/suites/package.sh alone: its lab runs a private libvirtd, renders the man page.
  package) need+=(rpm dpkg-dev binutils man-db systemd libvirt-daemon-system libvirt-clients qemu-system-x86) ;;
  fuzz) need=(gcc g++ libc6-dev) ;;
  cloud-init) need+=("${cloud_init_need[@]}") ;;
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
  # cloud-init is installed only for its network_data.json reader (tests/guest_config/network_data.rs):
  # it must never configure this machine at boot.
  if printf '%s\n' "${missing[@]}" | grep -qx cloud-init; then mkdir -p /etc/cloud && touch /etc/cloud/cloud-init.disabled; fi
fi
# cargo-fuzz for tests/suites/fuzz.sh (libFuzzer targets in fuzz/).
if [ "$what" = test ] || [ "$what" = fuzz ]; then
  command -v cargo-fuzz >/dev/null 2>&1 || { echo "deps: installing cargo-fuzz" >&2; cargo install cargo-fuzz --locked --quiet; }
fi
# Newer cloud-init releases, unpacked from their git tags: cloudinit/ only, plus the
# meson_versions.py a meson build would generate (from 26.1 on, version.py reads it).
# Every network step has a time limit (a machine whose firewall drops packets to GitHub
# would otherwise wait for TCP's), and a tree appears only once complete.
cloud_init_sources() {
  local cache=/var/cache/virt-l3/cloud-init tags tag tmp want=() missing=() got=()
  if [ -n "${VIRT_L3_CLOUD_INIT_TAGS+set}" ]; then
    tags=$VIRT_L3_CLOUD_INIT_TAGS
  else
    tags=$(sed 's/#.*//' "$(dirname "$0")/cloud-init-tags")
  fi
  for tag in $tags; do
    if [ -d "$cache/$tag/cloudinit" ]; then got+=("$tag"); else want+=("$tag"); fi
  done
  export GIT_TERMINAL_PROMPT=0
  local repo="$cache/.git-mirror"
  local git=(timeout 300 git -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=30)
  if [ ${#want[@]} -gt 0 ] && [ ! -d "$repo" ]; then
    echo "deps: cloning canonical/cloud-init from GitHub for cloud-init ${want[*]}" >&2
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/../cloud-init-mirror.XXXXXX")
    if timeout 20 git ls-remote https://github.com/canonical/cloud-init HEAD >/dev/null 2>&1 &&
      "${git[@]}" clone -q --bare --filter=blob:none https://github.com/canonical/cloud-init "$tmp/m" 2>/dev/null; then
      mv "$tmp/m" "$repo"
    fi
    rm -rf "$tmp"
  fi
  for tag in "${want[@]}"; do
    [ -d "$repo" ] || { missing+=("$tag"); continue; }
    echo "deps: unpacking cloud-init $tag into $cache/$tag" >&2
    tmp=$(mktemp -d "$cache/../cloud-init-$tag.XXXXXX")
    if "${git[@]}" -C "$repo" archive "refs/tags/$tag" cloudinit 2>/dev/null | tar -x -C "$tmp" 2>/dev/null &&
      [ -f "$tmp/cloudinit/version.py" ]; then
      if ! grep -q '^__VERSION__ = "' "$tmp/cloudinit/version.py"; then
        printf 'UPSTREAM_VERSION = "%s"\nDOWNSTREAM_VERSION = "@DOWNSTREAM_VERSION@"\n' "$tag" \
          >"$tmp/cloudinit/meson_versions.py"
      fi
      rm -rf "${cache:?}/$tag" && mv "$tmp" "$cache/$tag" && got+=("$tag")
    else
      rm -rf "$tmp"
      missing+=("$tag")
    fi
  done
  [ ${#got[@]} -eq 0 ] || echo "deps: cloud-init releases from source: ${got[*]}" >&2
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: SKIPPED cloud-init ${missing[*]}: not fetched from GitHub (unreachable, or no such tag); the guest_config tests run without them and say so" >&2
    return 1
  fi
}
case "$what" in
  cloud-init) cloud_init_sources ;;
  # Optional extras for the tests: never a failure.
  test) cloud_init_sources || true ;;
esac
