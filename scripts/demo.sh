#!/usr/bin/env bash
# The main job, end to end, in a throwaway network namespace: build virt-l3, make a
# hypervisor lab (bridge cloudbr0 with the guests' gateways, a VM tap), run a VM's
# lifecycle through the hook as libvirt would, and show the routes, neighbours,
# state and generated nwfilter at each step. Needs root on Debian 12; touches
# nothing outside the namespace and a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh demo
export PATH="$HOME/.cargo/bin:$PATH"

echo "== building virt-l3 (scripts/build-release.sh: cargo build --release, statically linked)"
scripts/build-release.sh --quiet
BIN=$PWD/target/release/virt-l3
NS=virt-l3-demo-$$
TMP=$(mktemp -d)
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
in_ns() { ip netns exec "$NS" "$@"; }
show() {
  run ip -n "$NS" route show proto 52
  run ip -n "$NS" -6 route show proto 52
  run ip -n "$NS" neigh show dev cloudbr0 nud permanent
}

say "a hypervisor lab: namespace $NS, bridge cloudbr0 (169.254.0.1/32, fe80::1/64), tap vnet3"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add cloudbr0 type bridge
ip -n "$NS" addr add 169.254.0.1/32 dev cloudbr0
ip -n "$NS" addr add fe80::1/64 dev cloudbr0 nodad
ip -n "$NS" link set cloudbr0 up
ip -n "$NS" link add vnet3 type veth peer name guest0
ip -n "$NS" link set vnet3 master cloudbr0 up

mkdir -p "$TMP/qemu"
cat > "$TMP/config.toml" <<CONF
# /etc/virt-l3/config.toml on a real host; every key is optional.
state_dir = "$TMP/state"
libvirt_status_dir = "$TMP/qemu"
CONF
export VIRT_L3_CONFIG=$TMP/config.toml

# The domain XML CloudStack would hand libvirt: addresses in per-NIC metadata.
say "the agent adds virt-l3's security group to the domain XML (virt-l3 nwfilter inject)"
if "$BIN" nwfilter inject < testdata/domains/dual-stack.xml > "$TMP/domain.xml" 2>"$TMP/err"; then
  grep -A3 '<filterref' "$TMP/domain.xml" || true
else
  cp testdata/domains/dual-stack.xml "$TMP/domain.xml"
  echo "(nwfilter inject unavailable: $(cat "$TMP/err")); using the fixture as is"
  echo 'require_nwfilter = false' >> "$TMP/config.toml"
fi

say "the filters an operator audits (virt-l3 nwfilter render --out-dir)"
if "$BIN" nwfilter render --out-dir "$TMP/filters" < "$TMP/domain.xml" >/dev/null 2>&1; then
  for f in "$TMP"/filters/*.xml; do echo "--- $(basename "$f")"; sed -n '1,40p' "$f"; done
else
  echo "(nwfilter render unavailable)"
fi

say "what the hook will do (virt-l3 plan)"
in_ns "$BIN" plan < "$TMP/domain.xml"

say "libvirt starts the VM: hook prepare, start, started"
for op in prepare start started; do
  run in_ns "$BIN" hook i-2-10-VM $op begin - < "$TMP/domain.xml"
done
show
run ip -n "$NS" -d link show vnet3 | grep -o 'isolated [a-z]*'
( echo "<domstatus state='running' reason='booted' pid='1'>"; cat "$TMP/domain.xml"; echo "</domstatus>" ) > "$TMP/qemu/i-2-10-VM.xml"
run in_ns "$BIN" status

say "someone flushes the bridge's routes; reconcile puts back exactly what is missing"
run ip -n "$NS" route flush dev cloudbr0
run in_ns "$BIN" reconcile
show

say "a guest claiming another VM's address is refused at prepare"
sed -e 's/i-2-10-VM/thief/; s/6f5a3b2e-1c4d-4e5f-8a9b-0c1d2e3f4a5b/00000000-1111-4222-8333-444444444444/' "$TMP/domain.xml" > "$TMP/thief.xml"
in_ns "$BIN" hook thief prepare begin - < "$TMP/thief.xml" || echo "(exit $? : libvirt aborts the start and shows that line)"

say "libvirt stops the VM: hook stopped, release"
rm -f "$TMP/qemu/i-2-10-VM.xml"
for op in stopped release; do
  run in_ns "$BIN" hook i-2-10-VM $op end - < "$TMP/domain.xml"
done
show
run in_ns "$BIN" status
say "done: the namespace and files are removed on exit"
