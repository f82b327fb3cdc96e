#!/usr/bin/env bash
# Security-group lab (issue 3): virt-l3's nwfilter rules in a real libvirtd.
#
#  1. render the filters of every test domain; each validates against libvirt's
#     nwfilter schema (xmllint --relaxng).
#  2. in a private libvirtd (tests/lib/libvirtd.sh: own mount and network namespace),
#     `virt-l3 nwfilter define` them, twice: the second run must keep every UUID;
#     the rule comments must survive in `virsh nwfilter-dumpxml`.
#  3. tests/nwfilter-lab/matrix.py (with lab.py, attacks.py, perimeter.py, legit.py
#     beside it): three guests on a bridge, attacks and legitimate
#     flows without filter (control), with virt-l3's filters, with clean-traffic, and as
#     in production (filters, the hook's nftables tables and accepted taps, `virt-l3
#     watch`): a rogue fourth port, TCP to the hypervisor's services and a management
#     network, an upstream namespace, a second domain with A's MAC (issue 14).
#
# Needs root, libvirt-daemon-system, python3-scapy (Debian's /usr/bin/python3), libxml2-utils (scripts/deps.sh test).
# Usage: tests/suites/nwfilter-lab.sh [--markdown FILE]   (VIRT_L3_BIN: a built binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MARKDOWN=
[ "${1:-}" = --markdown ] && MARKDOWN=$(realpath -m "$2")
# shellcheck source=../lib/libvirtd.sh
source tests/lib/libvirtd.sh

fail() { echo "nwfilter-lab: FAIL: $*" >&2; exit 1; }

BIN=${VIRT_L3_BIN:-}
if [ -z "$BIN" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
  scripts/build-release.sh --quiet
  BIN=$ROOT/target/release/virt-l3
fi
LAB=nwf$$
PREFIX=vl3nwf$$
WORK=$(mktemp -d /tmp/virt-l3-nwfilter-lab.XXXXXX)
chmod 0755 "$WORK"
CONFIG=$ROOT/tests/nwfilter-lab/config.toml

cleanup() {
  local rc=$?
  set +e
  for g in a b c u m r; do
    [ -e "/run/netns/$PREFIX-$g" ] && ip netns del "$PREFIX-$g"
  done
  if [ $rc -ne 0 ]; then
    echo "--- libvirtd log (tail)" >&2
    lab_log "$LAB" 30 >&2
  fi
  lab_stop "$LAB"
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

echo "nwfilter-lab: render and validate against libvirt's schema"
n=0
for dom in testdata/domains/{dual-stack,ipv4-only,ipv6-only,multi-nic,flat-metadata,filterref-params}.xml \
  tests/nwfilter-lab/domains/*.xml; do
  out=$WORK/render/$(basename "$dom" .xml)
  "$BIN" --config "$CONFIG" nwfilter render --out-dir "$out" <"$dom" >/dev/null ||
    fail "render of $dom failed"
  for f in "$out"/*.xml; do
    xmllint --noout --relaxng /usr/share/libvirt/schemas/nwfilter.rng "$f" 2>"$WORK/xmllint.err" ||
      { cat "$WORK/xmllint.err" >&2; fail "$f does not validate against nwfilter.rng"; }
    n=$((n + 1))
  done
done
echo "nwfilter-lab: $n rendered filters validate"

echo "nwfilter-lab: private libvirtd"
lab_start "$LAB"
# The filters the lab has before virt-l3 defines any (libvirt's own): the counts below are
# of what the defines added, whatever the host's libvirt ships.
lab_virsh "$LAB" nwfilter-list | sort >"$WORK/uuids.0"
for g in a b c; do
  lab_exec "$LAB" "$BIN" --config "$CONFIG" nwfilter define \
    <"tests/nwfilter-lab/domains/guest-$g.xml" >"$WORK/define-$g.1" || fail "define of guest $g failed"
done
lab_virsh "$LAB" nwfilter-list | sort >"$WORK/uuids.1"
grep -q 'defined virt-l3-nic-5254004c330a' "$WORK/define-a.1" || fail "first define did not create guest a's filter"
for g in a b c; do
  lab_exec "$LAB" "$BIN" --config "$CONFIG" nwfilter define \
    <"tests/nwfilter-lab/domains/guest-$g.xml" >"$WORK/define-$g.2" || fail "second define of guest $g failed"
done
lab_virsh "$LAB" nwfilter-list | sort >"$WORK/uuids.2"
diff -u "$WORK/uuids.1" "$WORK/uuids.2" || fail "redefining changed a filter's UUID"
grep -q 'redefined virt-l3-nic-5254004c330a (uuid ' "$WORK/define-a.2" || fail "second define did not redefine in place"
comm -13 "$WORK/uuids.0" "$WORK/uuids.2" >"$WORK/uuids.new"
[ "$(wc -l <"$WORK/uuids.new")" = 7 ] && [ "$(grep -c ' virt-l3-' "$WORK/uuids.new")" = 7 ] ||
  fail "expected 4 building blocks + 3 NIC filters, all virt-l3's, added to the lab's: $(cat "$WORK/uuids.new")"
# Every rule of the rendered file keeps its comment in libvirt's own copy.
lab_virsh "$LAB" nwfilter-dumpxml virt-l3-nic-5254004c330a >"$WORK/dump.xml"
want=$(grep -c '<rule ' "$WORK/render/guest-a/virt-l3-nic-5254004c330a.xml")
got=$(grep -c "comment='virt-l3: " "$WORK/dump.xml")
[ "$want" -gt 0 ] && [ "$want" = "$got" ] || fail "libvirt kept $got of $want rule comments"
echo "nwfilter-lab: defined 7 filters, redefinition kept UUIDs, $got rule comments kept by libvirt"

echo "nwfilter-lab: traffic matrix"
/usr/bin/python3 -B tests/nwfilter-lab/matrix.py --holder "$(lab_pid "$LAB")" --prefix "$PREFIX" --work "$WORK" --bin "$BIN" \
  ${MARKDOWN:+--markdown "$MARKDOWN"} || fail "traffic matrix (see above)"
echo "nwfilter-lab: passed"
