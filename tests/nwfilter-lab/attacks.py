"""The attacks of the nwfilter traffic matrix: frames a guest or the host side sends
(ATTACKS), and attacks judged by their effect on the hypervisor (EFFECT_ATTACKS).
"""

import random
import socket
import time

from scapy.all import (
    ARP, Dot1Q, Ether, ICMP, ICMPv6EchoRequest, ICMPv6MLReport2, ICMPv6ND_NA, ICMPv6ND_NS,
    ICMPv6ND_RA, ICMPv6ND_Redirect, ICMPv6NDOptDstLLAddr, ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr, IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, PadN, Raw, UDP,
    IPv6ExtHdrHopByHop, RouterAlert,
)

from lab import A, B, C, GUESTS, GW4, GW6, GW_MAC, HOST4, HOST6, eui64


# --- attacks ----------------------------------------------------------------------------
BCAST = "ff:ff:ff:ff:ff:ff"
LL_A = "fe80::5054:ff:fe4c:330a"
LL_B = "fe80::5054:ff:fe4c:330b"
LL_C = "fe80::5054:ff:fe4c:330c"
assert LL_A == eui64(A["mac"]) and LL_C == eui64(C["mac"])
GW6_NS_GROUP, GW6_NS_MAC = "ff02::1:ff00:1", "33:33:ff:00:00:01"


def solicited(addr):
    raw = socket.inet_pton(socket.AF_INET6, addr)
    group = socket.inet_ntop(socket.AF_INET6, bytes.fromhex("ff0200000000000000000001ff") + raw[13:])
    return group, "33:33:ff:" + ":".join(f"{b:02x}" for b in raw[13:])


def qemu_announce(mac):
    """The frame qemu's announce-self sends (net/announce.c: announce_self_create)."""
    return Ether(dst=BCAST, src=mac, type=0x8035) / ARP(
        hwtype=1, ptype=0x0800, hwlen=6, plen=4, op=3,
        hwsrc=mac, psrc="0.0.0.0", hwdst=mac, pdst="0.0.0.0")


def e(src=None, dst=GW_MAC, **kw):
    return Ether(src=src or A["mac"], dst=dst, **kw)


NS_C, NS_C_MAC = solicited(C["v6"][0])
DAD_GROUP, DAD_MAC = solicited(A["v6"][1])
ATTACKS = [
    # (id, property, sender, frame, points it reaches when nothing filters)
    ("mac-spoof", "frames only with its own MAC", "a",
     e(src="02:de:ad:00:00:01") / IP(src=A["v4"][0], dst=HOST4) / ICMP(), ["br"]),
    ("ipv4-spoof-foreign", "IPv4 only from its addresses", "a",
     e() / IP(src="203.0.113.99", dst=HOST4) / ICMP(), ["br"]),
    ("ipv4-spoof-other-guest", "IPv4 only from its addresses", "a",
     e() / IP(src=B["v4"][0], dst=HOST4) / ICMP(), ["br"]),
    ("ipv4-spoof-gateway-redirect", "no redirects", "a",
     e() / IP(src=GW4, dst=B["v4"][0]) / ICMP(type=5, code=1, gw=A["v4"][0]) / IP(src=B["v4"][0], dst=HOST4) / ICMP(),
     ["br"]),
    ("ipv4-outside-routed-prefix", "IPv4 only from its addresses", "a",
     e() / IP(src="198.51.100.100", dst=HOST4) / ICMP(), ["br"]),
    ("ipv6-spoof-foreign", "IPv6 only from its addresses", "a",
     e() / IPv6(src="2001:db8:99::1", dst=HOST6) / ICMPv6EchoRequest(), ["br"]),
    ("ipv6-spoof-other-guest", "IPv6 only from its addresses", "a",
     e() / IPv6(src=C["v6"][0], dst=HOST6) / ICMPv6EchoRequest(), ["br"]),
    ("ipv6-outside-routed-prefix", "IPv6 only from its addresses", "a",
     e() / IPv6(src="2001:db8:2000::1", dst=HOST6) / ICMPv6EchoRequest(), ["br"]),
    ("ipv6-link-local-data", "link-local sources only for ND and ICMPv6 with fe80::1", "a",
     e() / IPv6(src=LL_A, dst=HOST6) / ICMPv6EchoRequest(), ["br"]),
    ("ipv6-other-link-local-echo", "IPv6 only from its pinned link-local", "a",
     e() / IPv6(src="fe80::dead", dst=GW6) / ICMPv6EchoRequest(), ["br"]),
    ("ns-from-other-guest-link-local", "ND only from its pinned link-local and addresses", "a",
     e(dst=GW6_NS_MAC) / IPv6(src=LL_C, dst=GW6_NS_GROUP, hlim=255) / ICMPv6ND_NS(tgt=GW6) /
     ICMPv6NDOptSrcLLAddr(lladdr=A["mac"]), ["br", "b", "c"]),
    ("unicast-ns-from-other-guest-link-local", "ND only from its pinned link-local and addresses", "a",
     e() / IPv6(src=LL_C, dst=GW6, hlim=255) / ICMPv6ND_NS(tgt=GW6) / ICMPv6NDOptSrcLLAddr(lladdr=A["mac"]),
     ["br"]),
    ("na-from-other-guest-link-local", "ND only from its pinned link-local and addresses", "a",
     e(dst="33:33:00:00:00:01") / IPv6(src=LL_C, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=LL_C, R=0, S=0, O=1) /
     ICMPv6NDOptDstLLAddr(lladdr=A["mac"]), ["br", "b", "c"]),
    ("unicast-na-from-other-guest-link-local", "ND only from its pinned link-local and addresses", "a",
     e() / IPv6(src=LL_C, dst=GW6, hlim=255) / ICMPv6ND_NA(tgt=LL_C, R=0, S=1, O=1) /
     ICMPv6NDOptDstLLAddr(lladdr=A["mac"]), ["br"]),
    ("ipv6-link-local-mld", "link-local sources only for ND", "a",
     e(dst="33:33:00:00:00:16") / IPv6(src=LL_A, dst="ff02::16", hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLReport2(),
     ["br", "b", "c"]),
    ("arp-spoof-gateway", "ARP only for its own MAC/addresses", "a",
     e(dst=BCAST) / ARP(op=2, hwsrc=A["mac"], psrc=GW4, hwdst=BCAST, pdst=GW4), ["br", "b", "c"]),
    ("arp-spoof-other-guest", "ARP only for its own MAC/addresses", "a",
     e(dst=BCAST) / ARP(op=2, hwsrc=A["mac"], psrc=B["v4"][0], hwdst=BCAST, pdst=B["v4"][0]), ["br", "b", "c"]),
    ("arp-foreign-sender-mac", "ARP only for its own MAC/addresses", "a",
     e(dst=BCAST) / ARP(op=1, hwsrc="02:de:ad:00:00:02", psrc=A["v4"][0], pdst=GW4), ["br", "b", "c"]),
    ("arp-probe-foreign-address", "ARP only for its own MAC/addresses", "a",
     e(dst=BCAST) / ARP(op=1, hwsrc=A["mac"], psrc="0.0.0.0", pdst=B["v4"][0]), ["br", "b", "c"]),
    ("rarp-foreign-mac", "ARP only for its own MAC/addresses", "a",
     Ether(dst=BCAST, src=A["mac"], type=0x8035) / ARP(
         op=3, hwsrc="02:de:ad:00:00:03", psrc="0.0.0.0", hwdst="02:de:ad:00:00:03", pdst="0.0.0.0"),
     ["br", "b", "c"]),
    ("router-advertisement", "no router advertisements", "a",
     e(dst="33:33:00:00:00:01") / IPv6(src=LL_A, dst="ff02::1", hlim=255) / ICMPv6ND_RA() /
     ICMPv6NDOptPrefixInfo(prefix="2001:db8:bad::", prefixlen=64), ["br", "b", "c"]),
    ("router-advertisement-own-source", "no router advertisements", "a",
     e(dst="33:33:00:00:00:01") / IPv6(src=A["v6"][0], dst="ff02::1", hlim=255) / ICMPv6ND_RA(), ["br", "b", "c"]),
    ("ipv6-redirect", "no redirects", "a",
     e() / IPv6(src=LL_A, dst="fe80::1", hlim=255) / ICMPv6ND_Redirect(tgt=LL_A, dst=HOST6), ["br"]),
    ("dhcp-server-broadcast", "no DHCP server", "a",
     e(dst=BCAST) / IP(src=A["v4"][0], dst="255.255.255.255") / UDP(sport=67, dport=68) / Raw(b"\x02" * 240),
     ["br", "b", "c"]),
    ("dhcp-server-unicast", "no DHCP server", "a",
     e() / IP(src=A["v4"][0], dst=B["v4"][0]) / UDP(sport=67, dport=68) / Raw(b"\x02" * 240), ["br"]),
    ("dhcp-reply-other-port", "no DHCP server", "a",
     e() / IP(src=A["v4"][0], dst=B["v4"][0]) / UDP(sport=4067, dport=68) / Raw(b"\x02" * 240), ["br"]),
    ("dhcpv6-server-multicast", "no DHCPv6 server", "a",
     e(dst="33:33:00:00:00:01") / IPv6(src=LL_A, dst="ff02::1") / UDP(sport=547, dport=546) / Raw(b"\x02" * 40),
     ["br", "b", "c"]),
    ("dhcpv6-server-unicast", "no DHCPv6 server", "a",
     e() / IPv6(src=A["v6"][0], dst=C["v6"][0]) / UDP(sport=547, dport=546) / Raw(b"\x07" * 40), ["br"]),
    ("vlan-tagged", "no VLAN-tagged frames", "a",
     e() / Dot1Q(vlan=100) / IP(src=A["v4"][0], dst=HOST4) / ICMP(), ["br"]),
    ("qinq-tagged", "no VLAN-tagged frames", "a",
     e(type=0x88a8) / Dot1Q(vlan=100) / IP(src=A["v4"][0], dst=HOST4) / ICMP(), ["br"]),
    ("ethertype-ipx", "no other ethertypes", "a", e(type=0x8137) / Raw(b"\xff\xff" + b"\x00" * 40), ["br"]),
    ("ethertype-experimental-broadcast", "no other ethertypes", "a",
     e(dst=BCAST, type=0x88b5) / Raw(b"\x00" * 46), ["br", "b", "c"]),
    ("l2-unicast-to-guest-ipv4", "nothing addressed at layer 2 to another guest", "a",
     e(dst=B["mac"]) / IP(src=A["v4"][0], dst=B["v4"][0]) / ICMP(), ["b"]),
    ("l2-unicast-to-guest-ipv6", "nothing addressed at layer 2 to another guest", "a",
     e(dst=C["mac"]) / IPv6(src=A["v6"][0], dst=C["v6"][0]) / ICMPv6EchoRequest(), ["c"]),
    ("l2-unicast-arp-to-guest", "nothing addressed at layer 2 to another guest", "a",
     e(dst=B["mac"]) / ARP(op=1, hwsrc=A["mac"], psrc=A["v4"][0], pdst=B["v4"][0]), ["b"]),
    ("ipv4-broadcast", "no broadcast/multicast reaching other guests", "a",
     e(dst=BCAST) / IP(src=A["v4"][0], dst="255.255.255.255") / UDP(sport=5000, dport=5000), ["br", "b", "c"]),
    ("ipv4-multicast", "no broadcast/multicast reaching other guests", "a",
     e(dst="01:00:5e:00:00:fb") / IP(src=A["v4"][0], dst="224.0.0.251") / UDP(sport=5353, dport=5353),
     ["br", "b", "c"]),
    ("ipv6-multicast-echo", "no broadcast/multicast reaching other guests", "a",
     e(dst="33:33:00:00:00:01") / IPv6(src=A["v6"][0], dst="ff02::1") / ICMPv6EchoRequest(), ["br", "b", "c"]),
    ("ns-flooded-to-guest", "no broadcast/multicast reaching other guests", "a",
     e(dst=NS_C_MAC) / IPv6(src=A["v6"][0], dst=NS_C, hlim=255) / ICMPv6ND_NS(tgt=C["v6"][0]), ["c"]),
    ("arp-request-flooded-to-guest", "no broadcast/multicast reaching other guests", "a",
     e(dst=BCAST) / ARP(op=1, hwsrc=A["mac"], psrc=A["v4"][0], pdst=B["v4"][0]), ["b"]),
    ("dad-flooded-to-guests", "no broadcast/multicast reaching other guests", "a",
     e(dst=DAD_MAC) / IPv6(src="::", dst=DAD_GROUP, hlim=255) / ICMPv6ND_NS(tgt=A["v6"][1]), ["c"]),
    ("announce-flooded-to-guests", "no broadcast/multicast reaching other guests", "a",
     qemu_announce(A["mac"]), ["b", "c"]),
    ("to-guest-foreign-ipv4", "to the guest only its own addresses", "host",
     Ether(src=GW_MAC, dst=B["mac"]) / IP(src=HOST4, dst="192.0.2.99") / ICMP(), ["b"]),
    ("to-guest-other-guests-ipv4", "to the guest only its own addresses", "host",
     Ether(src=GW_MAC, dst=B["mac"]) / IP(src=HOST4, dst=A["v4"][0]) / ICMP(), ["b"]),
    ("to-guest-foreign-ipv6", "to the guest only its own addresses", "host",
     Ether(src=GW_MAC, dst=C["mac"]) / IPv6(src=HOST6, dst="2001:db8:10::99") / ICMPv6EchoRequest(), ["c"]),
    ("to-ipv4-only-guest-ipv6", "to the guest only its own addresses", "host",
     Ether(src=GW_MAC, dst=B["mac"]) / IPv6(src=HOST6, dst="2001:db8:10::20") / ICMPv6EchoRequest(), ["b"]),
    ("ipv4-only-guest-sends-nd", "IPv4-only NIC: no IPv6", "b",
     Ether(src=B["mac"], dst="33:33:ff:00:00:01") / IPv6(src=LL_B, dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt=GW6),
     ["br", "a", "c"]),
    ("ipv4-only-guest-sends-ipv6", "IPv4-only NIC: no IPv6", "b",
     Ether(src=B["mac"], dst=GW_MAC) / IPv6(src="2001:db8:10::20", dst=HOST6) / ICMPv6EchoRequest(), ["br"]),
    ("ipv6-only-guest-sends-arp", "IPv6-only NIC: no IPv4/ARP", "c",
     Ether(src=C["mac"], dst=BCAST) / ARP(op=1, hwsrc=C["mac"], psrc="192.0.2.30", pdst=GW4), ["br", "a", "b"]),
    ("ipv6-only-guest-sends-ipv4", "IPv6-only NIC: no IPv4/ARP", "c",
     Ether(src=C["mac"], dst=GW_MAC) / IP(src="192.0.2.30", dst=HOST4) / ICMP(), ["br"]),
]


# --- attacks judged by their effect on the hypervisor ---------------------------------------
def host_neighbour(lab, addr):
    for line in lab.host("ip", "-6", "neigh", "show", "dev", "cloudbr0").stdout.splitlines():
        if line.split()[:1] == [addr]:
            return line
    return ""


def neighbour_count(lab):
    return len(lab.host("ip", "-6", "neigh", "show", "dev", "cloudbr0").stdout.splitlines())


def na_from_global(lab):
    """A's global address advertises C's link-local with A's MAC to the gateway."""
    frame = bytes(e() / IPv6(src=A["v6"][0], dst=GW6, hlim=255) / ICMPv6ND_NA(tgt=LL_C, R=0, S=1, O=1) /
                  ICMPv6NDOptDstLLAddr(lladdr=A["mac"]))
    lab.drain()
    for _ in range(3):
        lab.send("a", frame)
    time.sleep(0.3)
    arrived = any(frame[14:] in f for f in lab.drain()["br"])
    line = host_neighbour(lab, LL_C)
    return arrived, C["mac"] not in line, line or "no entry"


def ns_flood(lab, count=500):
    """500 solicitations for fe80::1 from random link-locals, A's MAC in the option."""
    lab.host("ip", "-6", "neigh", "flush", "dev", "cloudbr0", check=False)  # not the permanent ones
    before = neighbour_count(lab)
    rng = random.Random(7)
    frames = []
    for _ in range(count):
        src = "fe80::%x:%x:%x:%x" % tuple(rng.randrange(1, 0xffff) for _ in range(4))
        frames.append(bytes(e(dst=GW6_NS_MAC) / IPv6(src=src, dst=GW6_NS_GROUP, hlim=255) / ICMPv6ND_NS(tgt=GW6) /
                            ICMPv6NDOptSrcLLAddr(lladdr=A["mac"])))
    lab.drain()
    for f in frames:
        lab.send("a", f)
    time.sleep(0.5)
    grown = neighbour_count(lab) - before
    lab.host("ip", "-6", "neigh", "flush", "dev", "cloudbr0", check=False)
    own = len(A["v6"]) + 1  # its addresses and its link-local
    return grown >= count // 5, grown > own, f"{before} -> {before + grown} entries"


def fragmented_dhcpv6_reply(lab):
    """A DHCPv6 reply from A to C whose UDP header is in the second fragment: a 64-byte
    destination-options header fills the first (RFC 7112 forbids such a first fragment)."""
    marker = b"VL3FRAGDHCP6"
    src, dst = A["v6"][0], C["v6"][0]
    udp = bytes(IPv6(src=src, dst=dst) / UDP(sport=547, dport=546) / Raw(b"\x07" * 16 + marker))[40:]
    opts = bytes(IPv6ExtHdrDestOpt(nh=17, options=[PadN(optdata=b"\x00" * 60)]))
    assert len(opts) == 64, len(opts)
    ident = random.Random(11).randrange(1 << 31)
    first = e() / IPv6(src=src, dst=dst, nh=44) / IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=ident) / Raw(opts)
    second = e() / IPv6(src=src, dst=dst, nh=44) / IPv6ExtHdrFragment(nh=60, offset=len(opts) // 8, m=0, id=ident) / Raw(udp)
    lab.drain()
    for _ in range(3):
        lab.send("a", bytes(first))
        lab.send("a", bytes(second))
    time.sleep(0.3)
    seen = any(marker in f for f in lab.drain()["c"])
    return seen, seen, "reached guest c" if seen else "not at guest c"


def gateway_state(lab):
    """fe80::1 on cloudbr0: ok, tentative, dadfailed or absent."""
    out = lab.host("ip", "-6", "addr", "show", "dev", "cloudbr0").stdout
    for line in out.splitlines():
        if f"inet6 {GW6}/" in line:
            return "dadfailed" if "dadfailed" in line else "tentative" if "tentative" in line else "ok"
    return "absent"


def gateway_dad(lab, nodad=True):
    """The hypervisor removes fe80::1 from cloudbr0 and adds it again (the shipped way:
    `ip address add fe80::1/64 dev cloudbr0 nodad`, as packaging/examples and `check`'s
    fixes do; `nodad=False`: a plain `ip address add`), while A sends, every 50 ms for
    2.5 s, an unsolicited NA for fe80::1 with its own MAC and a DAD probe for fe80::1
    (NS from :: to its solicited-node group). Effect: fe80::1 tentative, dadfailed or
    gone afterwards, or the hypervisor holding a neighbour entry for it."""
    na = bytes(e(dst="33:33:00:00:00:01") / IPv6(src=LL_A, dst="ff02::1", hlim=255) /
               ICMPv6ND_NA(tgt=GW6, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=A["mac"]))
    probe = bytes(e(dst=GW6_NS_MAC) / IPv6(src="::", dst=GW6_NS_GROUP, hlim=255) / ICMPv6ND_NS(tgt=GW6))
    lab.drain()
    lab.host("ip", "address", "del", f"{GW6}/64", "dev", "cloudbr0")
    lab.send("a", na)
    lab.send("a", probe)
    lab.host("ip", "address", "add", f"{GW6}/64", "dev", "cloudbr0", *(["nodad"] if nodad else []))
    arrived = False
    t0 = time.time()
    while time.time() - t0 < 2.5:
        lab.send("a", na)
        lab.send("a", probe)
        time.sleep(0.05)
        arrived |= any(na[14:] in f or probe[14:] in f for f in lab.drain()["br"])
    deadline = time.time() + 3  # a DAD the attack did not disturb ends within ~2 s
    state = gateway_state(lab)
    while state == "tentative" and time.time() < deadline:
        time.sleep(0.1)
        state = gateway_state(lab)
    neighbour = host_neighbour(lab, GW6)
    if state != "ok" or not nodad:  # put it back the shipped way, usable
        lab.host("ip", "address", "del", f"{GW6}/64", "dev", "cloudbr0", check=False)
        lab.host("ip", "address", "add", f"{GW6}/64", "dev", "cloudbr0", "nodad")
    for g in GUESTS:  # the NA reached the others' caches where nothing filters it
        lab.guest(g, "ip", "-6", "neigh", "flush", "dev", "eth0", check=False)
    detail = f"fe80::1 {state}" + (f", neighbour {neighbour.strip()}" if neighbour else "")
    return arrived, state != "ok" or bool(neighbour), detail


EFFECT_ATTACKS = [
    # (id, property, what counts as arriving without a filter, run -> (arrived, effect, detail))
    ("na-from-global-for-other-link-local", "the hypervisor's neighbour for C's link-local stays C's",
     "the NA reaches the hypervisor", na_from_global),
    ("ns-flood-random-link-locals", "500 NS from random link-locals add no neighbour entries",
     "the table grows by >= 100", ns_flood),
    ("fragmented-dhcpv6-reply", "no first fragment without the upper-layer header (RFC 7112)",
     "the reply reaches guest c", fragmented_dhcpv6_reply),
    ("gateway-dad-readd-nodad", "fe80::1 removed and re-added the shipped way (`nodad`) while the guest "
     "sends an NA for it and a DAD probe: it stays usable", "the NA and probe reach the hypervisor", gateway_dad),
]


def run_effect_attacks(lab):
    return {name: list(run(lab)) for name, _p, _c, run in EFFECT_ATTACKS}


def marked(pkt, marker):
    """The frame with a marker the captures look for. IP packets carry it in their
    payload: br_netfilter trims anything after the IP length."""
    if pkt.haslayer(IP) or pkt.haslayer(IPv6):
        frame = bytes(pkt / Raw(marker))
    else:
        frame = bytes(pkt) + marker
    return frame + b"\x00" * max(0, 60 - len(frame))


def run_attacks(lab):
    results = {}
    for n, (name, _prop, sender, pkt, points) in enumerate(ATTACKS):
        frame = marked(pkt, b"VL3NWF%04d" % n)
        lab.drain()
        for _ in range(3):
            lab.send(sender, frame)
        time.sleep(0.15)
        seen = lab.drain()
        results[name] = sorted(p for p in points if any(b"VL3NWF%04d" % n in f for f in seen[p]))
    return results


# --- the rogue port: unfiltered, in no domain record ------------------------------------
