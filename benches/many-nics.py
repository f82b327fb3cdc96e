#!/usr/bin/python3
"""One domain XML with N NICs on a routed bridge, for timing `virt-l3 plan`
(issue 15, item 6: planning must stay linear in NICs).

Each NIC has one IPv4 address in CloudStack's per-NIC metadata and virt-l3's
per-NIC filterref, so every per-NIC rule (MAC, metadata block, filter, address,
duplicates) runs once per NIC. The XML is written without indentation so that
16,000 NICs fit under virt-l3's 4 MiB limit on domain XML.

  benches/many-nics.py 16000 > /tmp/many.xml
  time target/release/virt-l3 --config CONFIG plan --json < /tmp/many.xml > /dev/null

CONFIG: any config whose state_dir is an empty (or absent) directory.
"""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 16000
bridge = sys.argv[2] if len(sys.argv) > 2 else "cloudbr0"
meta, ifaces = [], []
for i in range(1, n + 1):
    mac = f"52:54:02:{(i >> 16) & 0xff:02x}:{(i >> 8) & 0xff:02x}:{i & 0xff:02x}"
    v4 = f"100.{64 + ((i >> 16) & 0x3f)}.{(i >> 8) & 0xff}.{i & 0xff}"
    meta.append(f'<c:nic mac="{mac}"><c:address address="{v4}"/></c:nic>\n')
    ifaces.append(
        f"<interface type='bridge'><mac address='{mac}'/><source bridge='{bridge}'/>"
        f"<filterref filter='virt-l3-nic-{mac.replace(':', '')}'/></interface>\n")
sys.stdout.write(
    f"<domain type='kvm'><name>many-nics-{n}</name>"
    f"<uuid>00000000-0000-4000-8000-{n:012x}</uuid>\n"
    '<metadata><c:network xmlns:c="https://download.cloudstack.org/libvirt/network">\n'
    f"{''.join(meta)}</c:network></metadata>\n"
    "<memory unit='MiB'>512</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>\n"
    f"<devices>\n{''.join(ifaces)}</devices></domain>\n")
