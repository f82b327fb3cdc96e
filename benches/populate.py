#!/usr/bin/python3
"""Generates the "10,000 other VMs" population for scripts/bench.sh, fast.

Each VM has the bench fixture's shape: 2 NICs on the bridge, one IPv4 and one
IPv6 address each (so 4 routes and 4 permanent neighbours per VM).

  --batch FILE    `ip -batch` input: every VM's routes and neighbours, exactly
                  as virt-l3 installs them (proto, metric, nud permanent).
  --state DIR     virt-l3's state directory in its documented layout
                  (src/state.rs): domains/<uuid>.json records and
                  owners/<address> claims, as `virt-l3 hook ... start` writes.
  --xml-dir DIR   one domain XML per VM (for `nwfilter render` over N domains).

The bench checks the result with `virt-l3 status`, which must call every
generated domain healthy: a format drift here fails the bench loudly.
"""
import argparse
import json
import os

p = argparse.ArgumentParser()
p.add_argument("--count", type=int, default=10000)
p.add_argument("--bridge", default="cloudbr0")
p.add_argument("--protocol", type=int, default=52)
p.add_argument("--metric", type=int, default=100)
p.add_argument("--filter", default="virt-l3-nic", help="nwfilter_name (filterref: NAME-<mac without colons>)")
p.add_argument("--batch")
p.add_argument("--state")
p.add_argument("--xml-dir")
a = p.parse_args()

XML = """<domain type='kvm'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <metadata>
    <cloudstack:network xmlns:cloudstack="https://download.cloudstack.org/libvirt/network">
{meta}    </cloudstack:network>
  </metadata>
  <memory unit='MiB'>512</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
{ifaces}  </devices>
</domain>
"""


def vm(i):
    """name, uuid, [(mac, tap, [v4, v6])] of VM number i."""
    name = f"bench-vm-{i}"
    n = i + 1  # no .0 host parts
    uuid = f"00000000-0000-4000-8000-{i:012x}"
    nics = []
    for k in (1, 2):
        mac = f"52:54:01:{k:02x}:{(n >> 8) & 0xff:02x}:{n & 0xff:02x}"
        v4 = f"10.{k}.{(n >> 8) & 0xff}.{n & 0xff}"
        v6 = f"2001:db8:{0x1000 + k:x}::{n:x}"
        nics.append((mac, f"vb{i}n{k}", [v4, v6]))
    return name, uuid, nics


if a.state:
    for sub in ("domains", "owners", "prefixes", "incoming"):
        os.makedirs(os.path.join(a.state, sub), exist_ok=True)
batch = open(a.batch, "w") if a.batch else None
if a.xml_dir:
    os.makedirs(a.xml_dir, exist_ok=True)

for i in range(a.count):
    name, uuid, nics = vm(i)
    if batch:
        for mac, _, addrs in nics:
            for ip in addrs:
                plen = 128 if ":" in ip else 32
                batch.write(f"route replace {ip}/{plen} dev {a.bridge} proto {a.protocol} metric {a.metric}\n"
                            f"neigh replace {ip} lladdr {mac} dev {a.bridge} nud permanent protocol {a.protocol}\n")
    if a.state:
        owner = f"{uuid} {name}"
        for _, _, addrs in nics:
            for ip in addrs:
                os.symlink(owner, os.path.join(a.state, "owners", ip))  # a claim, as state.rs writes it
        record = {
            "name": name,
            "uuid": uuid,
            "nics": [{"mac": mac, "bridge": a.bridge, "tap": tap, "addresses": addrs}
                     for mac, tap, addrs in nics],
            "metric": a.metric,
            "protocol": a.protocol,
            "standby": False,
            "since_ms": 0,
        }
        with open(os.path.join(a.state, "domains", f"{uuid}.json"), "w") as f:
            json.dump(record, f, indent=2)
    if a.xml_dir:
        meta = "".join(
            f"      <cloudstack:nic mac=\"{mac}\">\n"
            f"        <cloudstack:address address=\"{addrs[0]}\" prefix=\"32\" family=\"ipv4\"/>\n"
            f"        <cloudstack:address address=\"{addrs[1]}\" prefix=\"128\" family=\"ipv6\"/>\n"
            f"      </cloudstack:nic>\n" for mac, _, addrs in nics)
        ifaces = "".join(
            f"    <interface type='bridge'>\n      <mac address='{mac}'/>\n"
            f"      <source bridge='{a.bridge}'/>\n      <target dev='{tap}'/>\n"
            f"      <model type='virtio'/>\n      <filterref filter='{a.filter}-{mac.replace(':', '')}'/>\n"
            f"    </interface>\n" for mac, tap, _ in nics)
        with open(os.path.join(a.xml_dir, f"{name}.xml"), "w") as f:
            f.write(XML.format(name=name, uuid=uuid, meta=meta, ifaces=ifaces))
if batch:
    batch.close()
