#!/usr/bin/python3
"""The Python alternative to `virt-l3 hook` that scripts/bench.sh measures.

A minimal libvirt qemu hook in the style of cloudstack-agent's own (Python):
parse the domain XML with ElementTree, read CloudStack's per-NIC metadata, and
replace one /32 or /128 route and one permanent neighbour per address on the
routed bridge. Like hook.sh it does no validation and keeps no state, so it does
strictly less work than virt-l3.

Backend (environment variable HOOK_PY_BACKEND):
  pyroute2 (default): in-process netlink, like virt-l3; the fair comparison.
      pyroute2 0.7 (Debian 12) cannot set NDA_PROTOCOL, so its neighbours carry
      no protocol number.
  ip: one `ip` subprocess per route and neighbour, like hook.sh.

Usage (as libvirt calls a hook): hook.py DOMAIN OPERATION SUBOP EXTRA < domain.xml
"""
import os
import sys
import xml.etree.ElementTree as ET

NS = "{https://download.cloudstack.org/libvirt/network}"
BRIDGES = os.environ.get("BRIDGES", "cloudbr0").split()
PROTO = int(os.environ.get("PROTO", "52"))
METRIC = int(os.environ.get("METRIC", "100"))


def wanted(root):
    """(mac, bridge, address) for every metadata address of a NIC on a routed bridge."""
    bridge_of = {}
    for iface in root.iterfind("devices/interface"):
        mac = iface.find("mac")
        src = iface.find("source")
        if mac is not None and src is not None and src.get("bridge") in BRIDGES:
            bridge_of[mac.get("address", "").lower()] = src.get("bridge")
    out = []
    for nic in root.iterfind(f"metadata/{NS}network/{NS}nic"):
        mac = nic.get("mac", "").lower()
        if mac in bridge_of:
            for a in nic.iterfind(f"{NS}address"):
                out.append((mac, bridge_of[mac], a.get("address")))
    return out


def apply_pyroute2(entries):
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = {}
        for mac, br, addr in entries:
            if br not in index:
                index[br] = ipr.link_lookup(ifname=br)[0]
            v6 = ":" in addr
            ipr.route("replace", dst=addr, dst_len=128 if v6 else 32, oif=index[br],
                      proto=PROTO, priority=METRIC, scope=253)
            ipr.neigh("replace", dst=addr, lladdr=mac, ifindex=index[br],
                      state=0x80, family=10 if v6 else 2)  # NUD_PERMANENT


def apply_ip(entries):
    import subprocess

    for mac, br, addr in entries:
        length = 128 if ":" in addr else 32
        subprocess.run(["ip", "route", "replace", f"{addr}/{length}", "dev", br,
                        "proto", str(PROTO), "metric", str(METRIC)], check=True)
        subprocess.run(["ip", "neigh", "replace", addr, "lladdr", mac, "dev", br,
                        "nud", "permanent", "protocol", str(PROTO)], check=True)


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in ("start", "started", "reconnect"):
        return 0
    root = ET.fromstring(sys.stdin.buffer.read())
    entries = wanted(root)
    if os.environ.get("HOOK_PY_BACKEND", "pyroute2") == "ip":
        apply_ip(entries)
    else:
        apply_pyroute2(entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
