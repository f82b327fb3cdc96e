#!/bin/bash
# The shell alternative to `virt-l3 hook` that scripts/bench.sh measures: what an
# operator's libvirt qemu hook typically does, one `ip` process per route and per
# neighbour. It only handles the start-like operations, reads CloudStack's per-NIC
# metadata, and does no validation and keeps no state (virt-l3 does both), so it
# does strictly less work than virt-l3. XML parsing uses bash builtins only (no
# xmllint/sed processes), which is the fastest a shell script can be.
# Usage (as libvirt calls a hook): hook.sh DOMAIN OPERATION SUBOP EXTRA < domain.xml
set -u
op=${2:-}
case "$op" in start | started | reconnect) ;; *) exit 0 ;; esac
BRIDGES=${BRIDGES:-cloudbr0} PROTO=${PROTO:-52} METRIC=${METRIC:-100}

IFS= read -r -d '' xml || true
declare -A bridge_of=()
addrs=() # "mac address" pairs from the metadata
meta_mac='' iface_mac='' in_iface=0
re_meta_nic='<[a-z]*:?nic mac="([0-9a-fA-F:]+)"'
re_meta_addr='<[a-z]*:?address address="([^"]+)"'
re_mac="<mac address=['\"]([0-9a-fA-F:]+)['\"]"
re_src="<source bridge=['\"]([^'\"]+)['\"]"
while IFS= read -r line; do
  if [[ $line =~ $re_meta_nic ]]; then
    meta_mac=${BASH_REMATCH[1],,}
  elif [[ -n $meta_mac && $line =~ $re_meta_addr ]]; then
    addrs+=("$meta_mac ${BASH_REMATCH[1]}")
  elif [[ $line == *'</'*':nic>'* ]]; then
    meta_mac=''
  elif [[ $line == *'<interface '* ]]; then
    in_iface=1 iface_mac=''
  elif ((in_iface)) && [[ $line =~ $re_mac ]]; then
    iface_mac=${BASH_REMATCH[1],,}
  elif ((in_iface)) && [[ $line =~ $re_src ]]; then
    [[ -n $iface_mac ]] && bridge_of[$iface_mac]=${BASH_REMATCH[1]}
  elif [[ $line == *'</interface>'* ]]; then
    in_iface=0
  fi
done <<<"$xml"

rc=0
for pair in "${addrs[@]}"; do
  mac=${pair%% *} addr=${pair#* }
  br=${bridge_of[$mac]:-}
  [[ " $BRIDGES " == *" $br "* ]] || continue
  if [[ $addr == *:* ]]; then len=128; else len=32; fi
  ip route replace "$addr/$len" dev "$br" proto "$PROTO" metric "$METRIC" || rc=1
  ip neigh replace "$addr" lladdr "$mac" dev "$br" nud permanent protocol "$PROTO" || rc=1
done
exit $rc
