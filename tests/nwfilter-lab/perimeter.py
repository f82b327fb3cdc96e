"""The nwfilter traffic matrix's attacks from outside a filter (issue 14): the rogue port,
the hypervisor's services, a duplicate MAC, and virt-l3's tables flushed under watch.
"""

import re
import time

from scapy.all import (
    ARP, Ether, ICMP, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, IP, IPv6,
)

from lab import (
    A, GUESTS, GW4, GW6, GW_MAC, HOST4, HOST6, MGMT, MGMT_HOST, ROGUE4, ROGUE_MAC, sh, tcp,
)
from attacks import BCAST, marked


ROGUE = [
    # (id, property, frame, points it reaches when nothing filters)
    ("rogue-gateway-arp-claim", "a port nobody accepted passes nothing: gateway ARP claim",
     Ether(src=GW_MAC, dst=BCAST) / ARP(op=2, hwsrc=GW_MAC, psrc=GW4, hwdst=BCAST, pdst=GW4), ["a", "b", "c"]),
    ("rogue-ra-gateway-mac", "a port nobody accepted passes nothing: RA from the gateway's MAC",
     Ether(src=GW_MAC, dst="33:33:00:00:00:01") / IPv6(src=GW6, dst="ff02::1", hlim=255) / ICMPv6ND_RA() /
     ICMPv6NDOptSrcLLAddr(lladdr=GW_MAC) / ICMPv6NDOptPrefixInfo(prefix="2001:db8:bad::", prefixlen=64),
     ["a", "b", "c"]),
    ("rogue-direct-to-guest", "a port nobody accepted passes nothing: frames to another guest",
     Ether(src=ROGUE_MAC, dst=A["mac"]) / IP(src=ROGUE4, dst=A["v4"][0]) / ICMP(), ["a"]),
    ("rogue-to-gateway", "a port nobody accepted passes nothing: to the hypervisor",
     Ether(src=ROGUE_MAC, dst=GW_MAC) / IP(src=ROGUE4, dst=HOST4) / ICMP(), ["br"]),
]


def rogue(lab):
    """A fourth port joins cloudbr0 (no filter, no record) and sends the ROGUE frames,
    every 50 ms from the moment it joins; what arrives in the first second is reported,
    then, from 1 s on, each attack is judged as the others are. With watch running, the
    port must be isolated within the second."""
    ns = lab.ns_rogue
    labns = sh("ip", "netns", "identify", str(lab.holder)).stdout.strip()
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "add", "eth0", "address", ROGUE_MAC, "type", "veth", "peer", "name", "hR",
       "netns", labns)
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    lab.host("sysctl", "-qw", "net.ipv6.conf.hR.disable_ipv6=1")
    lab.host("ip", "link", "set", "hR", "up")
    lab.sockets["r"] = lab.open_socket(f"/run/netns/{ns}", "eth0")
    frames = [(name, marked(pkt, b"VL3RGE%02d" % n), points) for n, (name, _p, pkt, points) in enumerate(ROGUE)]
    first = {name: [] for name, _f, _p in frames}
    isolated_ms = None
    try:
        lab.drain()
        lab.host("ip", "link", "set", "hR", "master", "cloudbr0")
        t0 = time.time()
        while time.time() - t0 < 1.0:
            for name, frame, _points in frames:
                lab.sockets["r"].send(frame)
            time.sleep(0.05)
            seen = lab.drain()
            for n, (name, _frame, points) in enumerate(frames):
                for p in points:
                    if any(b"VL3RGE%02d" % n in f for f in seen[p]) and p not in first[name]:
                        first[name].append(p)
            if isolated_ms is None and lab.isolated("hR"):
                isolated_ms = int((time.time() - t0) * 1000)
        results = {}
        for n, (name, frame, points) in enumerate(frames):
            lab.drain()
            for _ in range(3):
                lab.sockets["r"].send(frame)
            time.sleep(0.15)
            seen = lab.drain()
            results[name] = sorted(p for p in points if any(b"VL3RGE%02d" % n in f for f in seen[p]))
        accepted = "hR" in lab.accepted_ports()
        c = lab.virt_l3("check") if lab.watch is not None else None
        check = " ".join((c.stdout + c.stderr).split()) if c else ""
    finally:
        lab.sockets.pop("r").close()
        sh("ip", "netns", "del", ns, check=False)
    return dict(first_second={k: sorted(v) for k, v in first.items()}, after=results,
                isolated_ms=isolated_ms, accepted=accepted,
                check_names_it="hR (no running domain names it)" in check)


# --- TCP to the hypervisor's services and a management network ---------------------------
SERVICES = [
    # (id, what, connect -> True when it connected); all from guest a
    ("a-ssh-host4", "guest -> hypervisor's other address, sshd (22)", lambda l: tcp(l, "a", HOST4, 22)),
    ("a-bgp-host4", "guest -> hypervisor's other address, BGP (179)", lambda l: tcp(l, "a", HOST4, 179)),
    ("a-ssh-host6", "guest -> hypervisor's other IPv6 address, sshd (22)", lambda l: tcp(l, "a", HOST6, 22)),
    ("a-bgp-host6", "guest -> hypervisor's other IPv6 address, BGP (179)", lambda l: tcp(l, "a", HOST6, 179)),
    ("a-ssh-gateway", "guest -> 169.254.0.1, sshd (22)", lambda l: tcp(l, "a", GW4, 22)),
    ("a-bgp-gateway", "guest -> 169.254.0.1, BGP (179)", lambda l: tcp(l, "a", GW4, 179)),
    ("a-ssh-mgmt", "guest -> a host of the management network (22)", lambda l: tcp(l, "a", MGMT, 22)),
    ("a-ssh-mgmt-hypervisor", "guest -> the hypervisor's management address (22)",
     lambda l: tcp(l, "a", MGMT_HOST, 22)),
]


def run_services(lab):
    return {name: bool(fn(lab)) for name, _d, fn in SERVICES}


# --- a second domain with A's MAC --------------------------------------------------------
def duplicate_mac(lab):
    """Domain lab-guest-d: A's MAC, its own name, UUID and address. `virt-l3 nwfilter
    define` must refuse it (A's filter unchanged), the hook's prepare must refuse it
    naming both domains."""
    xml = (lab.domain_xml("a").replace("lab-guest-a", "lab-guest-d")
           .replace("4c330a00-0000-4000-8000-00000000000a", "4c330d00-0000-4000-8000-00000000000d"))
    xml = re.sub(r"\n\s*<cloudstack:(address|route) [^>]*/>", "", xml)
    xml = xml.replace("<cloudstack:nic mac=\"52:54:00:4c:33:0a\">",
                      "<cloudstack:nic mac=\"52:54:00:4c:33:0a\">\n"
                      "<cloudstack:address address=\"192.0.2.40\" prefix=\"32\" family=\"ipv4\"/>")
    xml = xml.replace("<target dev='hA'/>", "<target dev='hD'/>")
    name = "virt-l3-nic-" + A["mac"].replace(":", "")
    before = lab.virsh("nwfilter-dumpxml", name).stdout
    d = lab.virt_l3("nwfilter", "define", stdin=xml)
    after = lab.virsh("nwfilter-dumpxml", name).stdout
    p = lab.hook("lab-guest-d", "prepare", "begin", xml)
    return dict(define_refused=d.returncode != 0, define_says=d.stderr.strip(),
                filter_unchanged=before == after and bool(before),
                prepare_refused=p.returncode != 0, prepare_says=p.stderr.strip(),
                names_both="lab-guest-a" in p.stderr and "lab-guest-d" in p.stderr)


# --- the tables flushed and deleted while watch runs ------------------------------------
def restore(lab):
    """`nft flush table inet virt_l3` and `nft delete table bridge virt_l3`: watch must
    restore both, with the three accepted taps, within a second (ms, or None)."""
    want = sorted(d["port"] for d in GUESTS.values())
    lab.host("nft", "flush", "table", "inet", "virt_l3")
    lab.host("nft", "delete", "table", "bridge", "virt_l3")
    t0 = time.time()
    while time.time() - t0 < 2:
        rules = lab.host("nft", "list", "chain", "inet", "virt_l3", "guest_to_host", check=False).stdout
        if lab.accepted_ports() == want and "drop" in rules:
            return int((time.time() - t0) * 1000)
        time.sleep(0.02)
    return None
