#!/usr/bin/env python3
"""Security-group lab (issue 3): attacks and legitimate flows through libvirt nwfilter.

Run by tests/suites/nwfilter-lab.sh, which starts a private libvirtd (tests/lib/libvirtd.sh)
and defines virt-l3's rendered filters in it. This script builds the topology inside the
lab's network namespace (bridge cloudbr0 = the hypervisor side) and three "guests"
(network namespaces joined by veth pairs whose host ends are bridge ports), then runs,
for each mode:

  unfiltered    no filter bound: the CONTROL. Every attack must arrive where it is
                aimed, every legitimate flow must work, or the test itself is broken.
  virt-l3       virt-l3's per-NIC filters bound with `virsh nwfilter-binding-create`:
                every attack must be blocked, every legitimate flow must work, before
                and after the attacks.
  clean-traffic libvirt's clean-traffic with IP parameters: measured, not asserted.
  production    as in production (issue 14): virt-l3's filters bound, and the hook
                (`virt-l3 hook NAME prepare|start|started`, a status file per guest) has
                installed virt-l3's nftables tables, accepted the three taps and isolated
                them; `virt-l3 watch` runs. Every attack must be blocked, every legitimate
                flow must work; the hypervisor's own addresses are protected there, so the
                flows aimed at them in the other modes go to the upstream namespace.

Every mode also meets (issue 14): a fourth, unfiltered port no domain record names
(the rogue port) joining the bridge and attacking; TCP from a guest to the hypervisor's
sshd (22) and BGP (179) ports and to a management network; traffic with an upstream
namespace routed through the hypervisor. Mode production also: a second domain with
A's MAC (`nwfilter define` and the hook's prepare must refuse it).

Attack frames are built with scapy and written on a packet socket of the sending
guest's eth0 (or of cloudbr0 for traffic towards a guest). Each carries a unique
marker (in the IP payload, or after an ARP/RARP/other frame); capture sockets on cloudbr0 (what reaches the
hypervisor) and on every guest's eth0 (what reaches the other guests) look for it.
Port isolation is left off, so the filters alone are tested.
"""

import argparse
import contextlib
import ctypes
import json
import os
import select
import socket
import subprocess
import sys
import time

import random
import re

import yaml

from scapy.all import (  # noqa: E402
    ARP, Dot1Q, Ether, ICMP, ICMPv6EchoRequest, ICMPv6MLReport2, ICMPv6ND_NA, ICMPv6ND_NS,
    ICMPv6ND_RA, ICMPv6ND_Redirect, ICMPv6NDOptDstLLAddr, ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr, IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, PadN, Raw, UDP,
    conf, IPv6ExtHdrHopByHop, RouterAlert,
)

conf.verb = 0

GW_MAC = "02:56:4c:33:00:01"
GW4, GW6 = "169.254.0.1", "fe80::1"
HOST4, HOST6 = "192.0.2.254", "2001:db8:ffff::1"
# The upstream namespace (behind the hypervisor's uplink up0) and a management network
# (mg0: a connected /24 that is not a routed bridge, protected by virt-l3's firewall).
UPLINK4, UPLINK6, UP4, UP6 = "100.100.0.", "fd00:100::", "100.101.0.1", "2001:db8:f000::1"
MGMT_HOST, MGMT = "10.99.0.1", "10.99.0.2"
ROGUE_MAC, ROGUE4 = "52:54:00:4c:33:0e", "192.0.2.50"
GUESTS = {
    "a": dict(mac="52:54:00:4c:33:0a", port="hA", v4=["192.0.2.10", "192.0.2.11"],
              v6=["2001:db8:10::10", "2001:db8:10::11"],
              p4=("198.51.100.16/28", "192.0.2.10", "198.51.100.17"),
              p6=("2001:db8:1000::/56", "2001:db8:10::10", "2001:db8:1000::1")),
    "b": dict(mac="52:54:00:4c:33:0b", port="hB", v4=["192.0.2.20", "192.0.2.21"], v6=[]),
    "c": dict(mac="52:54:00:4c:33:0c", port="hC", v4=[], v6=["2001:db8:10::30", "2001:db8:10::31"]),
}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def eui64(mac):
    """The EUI-64 link-local of a MAC: what virt-l3 pins by default (link_local = "eui64")."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 0x02
    iid = b[:3] + [0xff, 0xfe] + b[3:]
    return socket.inet_ntop(socket.AF_INET6, bytes.fromhex("fe80000000000000") + bytes(iid))


def first_fragment_rule():
    """virt-l3's nftables rule against first fragments without the upper-layer header
    (src/firewall/render.rs), installed in the lab's hypervisor in mode virt-l3."""
    text = open(os.path.join(ROOT, "src/firewall/render.rs")).read()
    m = re.search(r'FIRST_FRAGMENT_RULE: &str = "(.*)";', text)
    return m.group(1).replace('\\"', '"')


ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def sh(*cmd, check=True, timeout=30):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Lab:
    def __init__(self, holder, prefix, filters_dir, binary=None):
        self.holder = holder
        self.prefix = prefix
        self.filters_dir = filters_dir
        self.binary = binary
        self.ns = {g: f"{prefix}-{g}" for g in GUESTS}
        self.ns_up, self.ns_mgmt, self.ns_rogue = f"{prefix}-u", f"{prefix}-m", f"{prefix}-r"
        self.sockets = {}
        self.t4, self.t6 = HOST4, HOST6  # what the guests' flows to "the hypervisor" aim at
        self.watch = None
        self.listeners = []
        self.config = os.path.join(filters_dir, "production.toml")

    # --- running things where they belong -------------------------------------------
    def host(self, *cmd, check=True):
        return sh("nsenter", "-t", str(self.holder), "-n", "--", *cmd, check=check)

    def virsh(self, *args, check=True):
        return sh("nsenter", "-t", str(self.holder), "-m", "-n", "--",
                  "virsh", "-q", "-c", "qemu:///system", *args, check=check)

    def guest(self, g, *cmd, check=True):
        ns = self.ns[g] if g in self.ns else {"up": self.ns_up, "mgmt": self.ns_mgmt}[g]
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def virt_l3(self, *args, stdin=None, check=False, config=None):
        """virt-l3 with the production config (or `config`), in the lab's mount and network namespace."""
        return subprocess.run(["nsenter", "-t", str(self.holder), "-m", "-n", "--", self.binary,
                               "--config", config or self.config, *args],
                              input=stdin, capture_output=True, text=True, timeout=60)

    def listen(self, where, port):
        """A TCP listener (IPv4 and IPv6) in the hypervisor or a namespace."""
        code = ("import socket\ns=socket.socket(socket.AF_INET6)\n"
                "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\n"
                f"s.bind(('::',{port}));s.listen(50)\nwhile True: s.accept()[0].close()\n")
        pre = (["nsenter", "-t", str(self.holder), "-n", "--"] if where == "host"
               else ["ip", "netns", "exec", self.ns.get(where, self.ns_mgmt)])
        self.listeners.append(subprocess.Popen(pre + ["/usr/bin/python3", "-c", code],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def guest_listen_and_connect(self):
        if not getattr(self, "a_listening", False):
            self.listen("a", 8080)
            self.a_listening = True
            time.sleep(0.3)
        return tcp(self, "up", A["v4"][0], 8080)

    def close(self):
        self.stop_watch()
        for p in self.listeners:
            p.kill()
            p.wait()
        for ns in (self.ns_up, self.ns_mgmt, self.ns_rogue):
            sh("ip", "netns", "del", ns, check=False)

    # --- topology ---------------------------------------------------------------------
    def build(self):
        h = self.host
        h("ip", "link", "add", "cloudbr0", "type", "bridge")
        h("ip", "link", "set", "cloudbr0", "address", GW_MAC)
        h("sysctl", "-qw", "net.ipv6.conf.cloudbr0.accept_ra=0")
        h("ip", "link", "set", "cloudbr0", "up")
        h("ip", "addr", "add", f"{GW4}/32", "dev", "cloudbr0")
        h("ip", "addr", "add", f"{GW6}/64", "dev", "cloudbr0", "nodad")
        # The hypervisor's own addresses (its uplink's, in production).
        h("ip", "addr", "add", f"{HOST4}/32", "dev", "lo")
        h("ip", "addr", "add", f"{HOST6}/128", "dev", "lo", "nodad")
        h("sysctl", "-qw", "net.ipv4.ip_forward=1")
        h("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # A routed bridge must not send ICMP redirects: guests are not on-link with
        # each other, and a redirected guest would try layer 2, which the filters drop.
        # (IPv6 redirects have no switch; the filters drop them on the way in.)
        for conf in ("all", "default", "cloudbr0"):
            h("sysctl", "-qw", f"net.ipv4.conf.{conf}.send_redirects=0")
        labns = sh("ip", "netns", "identify", str(self.holder)).stdout.strip()
        for g, d in GUESTS.items():
            ns = self.ns[g]
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "add", "eth0", "address", d["mac"], "type", "veth",
               "peer", "name", d["port"], "netns", labns)
            h("sysctl", "-qw", f"net.ipv6.conf.{d['port']}.disable_ipv6=1")  # a bridge port, no address
            h("ip", "link", "set", d["port"], "master", "cloudbr0")
            h("ip", "link", "set", d["port"], "up")
            self.guest(g, "ip", "link", "set", "lo", "up")
            self.guest(g, "ip", "link", "set", "eth0", "up")
            for a in d["v4"]:
                self.guest(g, "ip", "addr", "add", f"{a}/32", "dev", "eth0")
                h("ip", "route", "add", f"{a}/32", "dev", "cloudbr0")
                h("ip", "neigh", "replace", a, "lladdr", d["mac"], "dev", "cloudbr0", "nud", "permanent")
            for a in d["v6"]:
                self.guest(g, "ip", "addr", "add", f"{a}/128", "dev", "eth0", "nodad")
                h("ip", "-6", "route", "add", f"{a}/128", "dev", "cloudbr0")
                h("ip", "-6", "neigh", "replace", a, "lladdr", d["mac"], "dev", "cloudbr0", "nud", "permanent")
            if d["v6"]:  # what the hook installs for the pinned link-local (no route)
                h("ip", "-6", "neigh", "replace", eui64(d["mac"]), "lladdr", d["mac"], "dev", "cloudbr0",
                  "nud", "permanent")
            if d["v4"]:
                self.guest(g, "ip", "route", "add", f"{GW4}/32", "dev", "eth0")
                self.guest(g, "ip", "route", "add", "default", "via", GW4, "dev", "eth0")
            if d["v6"]:
                self.guest(g, "ip", "-6", "route", "add", "default", "via", GW6, "dev", "eth0")
            for key, fam in (("p4", "-4"), ("p6", "-6")):
                if key in d:
                    prefix, via, inside = d[key]
                    self.guest(g, "ip", fam, "addr", "add", inside, "dev", "lo", *(["nodad"] if fam == "-6" else []))
                    h("ip", fam, "route", "add", prefix, "via", via, "dev", "cloudbr0", "onlink")
        # The upstream namespace, routed through the hypervisor (its uplink up0), and a
        # management network on mg0 (a connected /24, not a routed bridge).
        for ns, link, v4, v6 in ((self.ns_up, "up0", UPLINK4, UPLINK6), (self.ns_mgmt, "mg0", "10.99.0.", None)):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", link, "netns", labns)
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            h("ip", "link", "set", link, "up")
            h("ip", "addr", "add", f"{v4}1/24", "dev", link)
            sh("ip", "-n", ns, "addr", "add", f"{v4}2/24", "dev", "eth0")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"{v4}1")
            if v6:
                h("ip", "addr", "add", f"{v6}1/64", "dev", link, "nodad")
                sh("ip", "-n", ns, "addr", "add", f"{v6}2/64", "dev", "eth0", "nodad")
                sh("ip", "-n", ns, "-6", "route", "add", "default", "via", f"{v6}1")
        sh("ip", "-n", self.ns_up, "addr", "add", f"{UP4}/32", "dev", "lo")
        sh("ip", "-n", self.ns_up, "addr", "add", f"{UP6}/128", "dev", "lo", "nodad")
        h("ip", "route", "add", f"{UP4}/32", "via", f"{UPLINK4}2")
        h("ip", "-6", "route", "add", f"{UP6}/128", "via", f"{UPLINK6}2")
        # The hypervisor's sshd and BGP stand-ins, and a service on the management network.
        self.listen("host", 22)
        self.listen("host", 179)
        self.listen("mgmt", 22)
        # Packet sockets: opened inside each namespace, usable from here afterwards.
        self.sockets["br"] = self.open_socket(f"/proc/{self.holder}/ns/net", "cloudbr0")
        for g in GUESTS:
            self.sockets[g] = self.open_socket(f"/run/netns/{self.ns[g]}", "eth0")
        self.wait_addresses()

    def wait_addresses(self, timeout=20):
        """Until no address of the hypervisor or a guest is still tentative (DAD)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            outs = [self.host("ip", "-6", "addr").stdout] + [
                self.guest(g, "ip", "-6", "addr").stdout for g in GUESTS]
            if not any("tentative" in o for o in outs):
                return
            time.sleep(0.3)
        raise RuntimeError("IPv6 addresses still tentative after %ss" % timeout)

    def open_socket(self, netns_path, ifname):
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        target = os.open(netns_path, os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {netns_path}")
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((ifname, 0))
            s.setblocking(False)
        finally:
            libc.setns(home, CLONE_NEWNET)
            os.close(home)
            os.close(target)
        return s

    @contextlib.contextmanager
    def relink(self, g):
        """Guest g's eth0 set down and up, as a booting guest does. Its link going down
        detaches the lab's packet socket on it (the kernel reports ENETDOWN on the next
        read): the lab opens a new one once the link is up again."""
        self.guest(g, "ip", "link", "set", "eth0", "down")
        yield
        self.guest(g, "ip", "link", "set", "eth0", "up")
        self.sockets[g].close()
        self.sockets[g] = self.open_socket(f"/run/netns/{self.ns[g]}", "eth0")

    def drain(self):
        seen = {p: [] for p in self.sockets}
        while True:
            ready, _, _ = select.select(list(self.sockets.values()), [], [], 0)
            if not ready:
                return seen
            for p, s in self.sockets.items():
                if s in ready:
                    try:
                        while True:
                            data, addr = s.recvfrom(65535)
                            if addr[2] != PACKET_OUTGOING:
                                seen[p].append(data)
                    except BlockingIOError:
                        pass

    def send(self, sender, frame):
        point = "br" if sender == "host" else sender
        self.sockets[point].send(frame)

    # --- filters ----------------------------------------------------------------------
    def bind(self, mode):
        for g, d in GUESTS.items():
            self.virsh("nwfilter-binding-delete", d["port"], check=False)
        self.host("nft", "delete", "table", "inet", "virt_l3_lab", check=False)
        self.unproduce()
        if mode == "unfiltered":
            return
        if mode == "virt-l3":
            # virt-l3's inet table: the fragment rule before defragmentation, and
            # conntrack (its `ct state` rules load it, and with it defragmentation).
            rules = ("table inet virt_l3_lab {\n"
                     "  set routed_bridges { type ifname; elements = { \"cloudbr0\" } }\n"
                     "  chain fragments { type filter hook prerouting priority -450; policy accept;\n"
                     f"    {first_fragment_rule()}\n  }}\n"
                     "  chain guest_to_host { type filter hook input priority filter; policy accept;\n"
                     "    ct state invalid counter drop\n  }\n}\n")
            r = subprocess.run(["nsenter", "-t", str(self.holder), "-n", "--", "nft", "-f", "-"],
                               input=rules, capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"nft -f failed: {r.stderr.strip()}")
        for g, d in GUESTS.items():
            if mode in ("virt-l3", "production"):
                name = "virt-l3-nic-" + d["mac"].replace(":", "")
                params = ""  # addresses are in the filter's rules
            else:
                name = "clean-traffic"
                params = "".join(f"<parameter name='IP' value='{a}'/>" for a in d["v4"])
            xml = (f"<filterbinding><owner><name>lab-guest-{g}</name>"
                   f"<uuid>4c330{ord(g) - 97}00-0000-4000-8000-00000000000{g}</uuid></owner>"
                   f"<portdev name='{d['port']}'/><mac address='{d['mac']}'/>"
                   f"<filterref filter='{name}'>{params}</filterref></filterbinding>")
            path = os.path.join(self.filters_dir, f"binding-{g}.xml")
            with open(path, "w") as f:
                f.write(xml)
            self.virsh("nwfilter-binding-create", path)
        if mode == "production":
            self.produce()
        time.sleep(0.5)

    # --- production: the hook, the firewall tables, watch -------------------------------
    def write_config(self):
        state, status = os.path.join(self.filters_dir, "state"), os.path.join(self.filters_dir, "status")
        os.makedirs(state, exist_ok=True)
        os.makedirs(status, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(f'gateway_mac = "{GW_MAC}"\nstate_dir = "{state}"\nlibvirt_status_dir = "{status}"\n'
                    "# the lab binds the filters itself (nwfilter-binding-create), the domains carry no filterref\n"
                    "require_nwfilter = false\n[firewall]\nenabled = true\n")
        return status

    def domain_xml(self, g):
        return open(os.path.join(ROOT, "tests/nwfilter-lab/domains", f"guest-{g}.xml")).read()

    def hook(self, name, op, sub, xml):
        return self.virt_l3("hook", name, op, sub, "-", stdin=xml)

    def produce(self):
        """What libvirt and the hook do when the three domains start, then `watch`."""
        status = self.write_config()
        for g in GUESTS:
            xml = self.domain_xml(g)
            with open(os.path.join(status, f"lab-guest-{g}.xml"), "w") as f:
                f.write(f"<domstatus state='running' reason='booted' pid='4242'>\n{xml}\n</domstatus>\n")
            for op in ("prepare", "start", "started"):
                r = self.hook(f"lab-guest-{g}", op, "begin", xml)
                if r.returncode != 0:
                    raise RuntimeError(f"hook {op} of lab-guest-{g} failed: {r.stderr.strip()}")
        got = self.accepted_ports()
        if got != sorted(d["port"] for d in GUESTS.values()):
            raise RuntimeError(f"the hook accepted {got}, not the three taps")
        self.watch_log = open(os.path.join(self.filters_dir, "watch.log"), "w")
        self.watch = subprocess.Popen(
            ["nsenter", "-t", str(self.holder), "-m", "-n", "--", self.binary, "--config", self.config, "watch"],
            stdout=self.watch_log, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        self.t4, self.t6 = UP4, UP6

    def stop_watch(self):
        if self.watch is not None:
            self.watch.terminate()
            try:
                self.watch.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.watch.kill()
                self.watch.wait()
            self.watch = None

    def unproduce(self):
        if self.watch is None and not os.path.exists(self.config):
            return
        self.stop_watch()
        for g in GUESTS:
            self.hook(f"lab-guest-{g}", "stopped", "end", self.domain_xml(g))
            self.hook(f"lab-guest-{g}", "release", "end", self.domain_xml(g))
        self.virt_l3("firewall", "remove")
        for d in GUESTS.values():
            self.host("bridge", "link", "set", "dev", d["port"], "isolated", "off", check=False)
        os.unlink(self.config)
        self.t4, self.t6 = HOST4, HOST6

    def accepted_ports(self):
        out = self.host("nft", "list", "set", "bridge", "virt_l3", "accepted_ports", check=False).stdout
        return sorted(out.split('"')[1::2])

    def isolated(self, port):
        return "isolated on" in self.host("ip", "-d", "link", "show", port, check=False).stdout


# --- attacks ----------------------------------------------------------------------------
A, B, C = GUESTS["a"], GUESTS["b"], GUESTS["c"]
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
def tcp(lab, where, addr, port):
    code = f"import socket; socket.create_connection(({addr!r}, {port}), timeout=1.5)"
    return lab.guest(where, "timeout", "3", "/usr/bin/python3", "-c", code, check=False).returncode == 0


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


# --- legitimate flows -------------------------------------------------------------------
def ping(lab, where, dst, src=None):
    cmd = ["ping", "-c", "1", "-W", "2"] + (["-I", src] if src else []) + [dst]
    r = lab.host(*cmd, check=False) if where == "host" else lab.guest(where, *cmd, check=False)
    if r.returncode != 0:  # the first probe may wait for neighbour resolution
        r = lab.host(*cmd, check=False) if where == "host" else lab.guest(where, *cmd, check=False)
    return r.returncode == 0


def addr_state(lab, g, addr):
    out = lab.guest(g, "ip", "-6", "addr", "show", "dev", "eth0").stdout
    for line in out.splitlines():
        if f"inet6 {addr}/" in line:
            return ("dadfailed" if "dadfailed" in line else
                    "tentative" if "tentative" in line else "ok")
    return "absent"


def dad(lab, conflict):
    """Re-adds A's second IPv6 address with DAD. Without a conflict it must become
    usable and its DAD probe must reach the hypervisor; with the hypervisor holding the
    address, the hypervisor's defence must reach A (address marked dadfailed)."""
    addr = A["v6"][1]
    if conflict:
        lab.host("ip", "addr", "add", f"{addr}/128", "dev", "cloudbr0", "nodad")
    lab.guest("a", "ip", "addr", "del", f"{addr}/128", "dev", "eth0", check=False)
    lab.drain()
    lab.guest("a", "ip", "addr", "add", f"{addr}/128", "dev", "eth0")
    deadline = time.time() + 10
    state = addr_state(lab, "a", addr)
    while state == "tentative" and time.time() < deadline:
        time.sleep(0.2)
        state = addr_state(lab, "a", addr)
    seen = lab.drain()
    probe = any(
        Ether(f).haslayer(ICMPv6ND_NS) and Ether(f)[IPv6].src == "::" and Ether(f)[ICMPv6ND_NS].tgt == addr
        for f in seen["br"])
    if conflict:
        lab.host("ip", "addr", "del", f"{addr}/128", "dev", "cloudbr0", check=False)
    lab.guest("a", "ip", "addr", "del", f"{addr}/128", "dev", "eth0", check=False)
    lab.guest("a", "ip", "addr", "add", f"{addr}/128", "dev", "eth0", "nodad")
    return (state == "dadfailed") if conflict else (state == "ok" and probe)


def guest_config_dad(lab, g="c"):
    """Guest C configured from `virt-l3 guest-config` (netplan) of its domain, as a
    booting guest applies it: eth0 down and up (its link-local generated as netplan
    says, with DAD), then its addresses with DAD and its routes. Afterwards its
    EUI-64 link-local and every /128 must be there, neither tentative nor dadfailed."""
    config = lab.config  # production's (its state names the three domains)
    if not os.path.exists(config):  # the other modes: no filterref, the lab binds the filters itself
        config = os.path.join(lab.filters_dir, "guest-config.toml")
        with open(config, "w") as f:
            f.write(f'gateway_mac = "{GW_MAC}"\nstate_dir = "{os.path.join(lab.filters_dir, "gc-state")}"\n'
                    "require_nwfilter = false\n")
    r = lab.virt_l3("guest-config", "--format", "netplan", stdin=lab.domain_xml(g), config=config)
    if r.returncode != 0:
        print(f"guest-config of lab-guest-{g} failed: {r.stderr.strip()}", file=sys.stderr)
        return False
    (nic,) = yaml.safe_load(r.stdout)["network"]["ethernets"].values()
    mac = GUESTS[g]["mac"]
    if nic["match"]["macaddress"].lower() != mac or nic.get("ipv6-address-generation") != "eui64":
        print(f"guest-config of lab-guest-{g}: not the EUI-64 of {mac}: {r.stdout}", file=sys.stderr)
        return False
    run = lambda *cmd: lab.guest(g, *cmd, check=False)  # noqa: E731
    with lab.relink(g):
        run("ip", "address", "flush", "dev", "eth0")
        run("sysctl", "-qw", "net.ipv6.conf.eth0.addr_gen_mode=0")  # eui64
        run("sysctl", "-qw", f"net.ipv6.conf.eth0.accept_ra={int(bool(nic.get('accept-ra')))}")
        run("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=1")
    for a in nic.get("addresses", []):
        run("ip", "address", "add", a, "dev", "eth0")
    for rt in nic.get("routes", []):
        fam = "-6" if ":" in rt["to"] else "-4"
        run("ip", fam, "route", "replace", "default" if rt["to"] in ("::/0", "0.0.0.0/0") else rt["to"],
            "via", rt["via"], "dev", "eth0", *(["onlink"] if rt.get("on-link") else []))
    want = [eui64(mac)] + [a.split("/")[0] for a in nic.get("addresses", []) if ":" in a]
    deadline = time.time() + 6
    states = {}
    while time.time() < deadline:
        states = {a: addr_state(lab, g, a) for a in want}
        if "tentative" not in states.values():
            break
        time.sleep(0.2)
    if set(want) != {eui64(mac)} | set(GUESTS[g]["v6"]) or any(v != "ok" for v in states.values()):
        print(f"guest-config DAD of lab-guest-{g}: {states}", file=sys.stderr)
        return False
    return ping(lab, g, "fe80::1%eth0")


def announce(lab):
    marker = b"VL3ANNOUNCE"
    frame = bytes(qemu_announce(A["mac"])) + marker
    frame += b"\x00" * max(0, 60 - len(frame))
    lab.drain()
    lab.send("a", frame)
    time.sleep(0.15)
    return any(marker in f for f in lab.drain()["br"])


LEGIT = [
    ("a-gateway-v4", "guest -> gateway 169.254.0.1 (ARP + ICMP)", lambda l: ping(l, "a", GW4)),
    ("a-gateway-v6", "guest -> hypervisor (production: upstream) via fe80::1 (ND + ICMPv6)",
     lambda l: ping(l, "a", l.t6)),
    ("a-host-v4", "guest -> hypervisor address (production: upstream)", lambda l: ping(l, "a", l.t4)),
    ("a-secondary-v4", "guest from its 2nd IPv4", lambda l: ping(l, "a", l.t4, A["v4"][1])),
    ("a-secondary-v6", "guest from its 2nd IPv6", lambda l: ping(l, "a", l.t6, A["v6"][1])),
    ("host-a-v4", "hypervisor -> guest, each IPv4",
     lambda l: all(ping(l, "host", x) for x in A["v4"])),
    ("host-a-v6", "hypervisor -> guest, each IPv6",
     lambda l: all(ping(l, "host", x) for x in A["v6"])),
    ("host-a-prefix-v4", "hypervisor -> routed prefix 198.51.100.16/28", lambda l: ping(l, "host", A["p4"][2])),
    ("host-a-prefix-v6", "hypervisor -> routed prefix 2001:db8:1000::/56", lambda l: ping(l, "host", A["p6"][2])),
    ("a-b-routed-v4", "guest -> guest via hypervisor, IPv4", lambda l: ping(l, "a", B["v4"][1])),
    ("b-a-routed-v4", "guest -> guest via hypervisor, IPv4 (reverse)", lambda l: ping(l, "b", A["v4"][0])),
    ("a-c-routed-v6", "guest -> guest via hypervisor, IPv6", lambda l: ping(l, "a", C["v6"][1])),
    ("c-a-routed-v6", "guest -> guest via hypervisor, IPv6 (reverse)", lambda l: ping(l, "c", A["v6"][0])),
    ("v4only-gateway", "IPv4-only guest -> gateway", lambda l: ping(l, "b", GW4)),
    ("v6only-host", "IPv6-only guest -> hypervisor (production: upstream) via fe80::1",
     lambda l: ping(l, "c", l.t6)),
    ("a-ping-fe80-1", "guest pings fe80::1 from its link-local", lambda l: ping(l, "a", "fe80::1%eth0")),
    ("c-ping-fe80-1", "IPv6-only guest pings fe80::1 from its link-local", lambda l: ping(l, "c", "fe80::1%eth0")),
    ("a-ping-169-254-0-1", "guest pings 169.254.0.1", lambda l: ping(l, "a", GW4)),
    ("dad-unique", "IPv6 DAD: probe leaves, address becomes usable", lambda l: dad(l, conflict=False)),
    ("dad-conflict", "IPv6 DAD: hypervisor's defence reaches the guest", lambda l: dad(l, conflict=True)),
    ("announce-self", "qemu announce-self RARP reaches the bridge", announce),
    ("guest-config-dad", "IPv6-only guest configured from `guest-config` (netplan): its EUI-64 link-local "
     "and its /128s pass DAD (neither tentative nor dadfailed)", guest_config_dad),
    ("up-a-v4", "upstream -> guest through the hypervisor, IPv4", lambda l: ping(l, "up", A["v4"][0])),
    ("up-a-v6", "upstream -> guest through the hypervisor, IPv6", lambda l: ping(l, "up", A["v6"][0])),
    ("up-b-v4", "upstream -> IPv4-only guest", lambda l: ping(l, "up", B["v4"][1])),
    ("up-c-v6", "upstream -> IPv6-only guest", lambda l: ping(l, "up", C["v6"][1])),
    ("a-up-v4", "guest -> upstream, IPv4", lambda l: ping(l, "a", UP4)),
    ("a-up-v6", "guest -> upstream, IPv6", lambda l: ping(l, "a", UP6)),
    ("up-a-tcp", "upstream -> guest TCP, and back", lambda l: l.guest_listen_and_connect()),
    ("mgmt-a-v4", "management network -> guest (it may open connections)", lambda l: ping(l, "mgmt", A["v4"][0])),
]


def run_legit(lab):
    for g in GUESTS:
        lab.guest(g, "ip", "neigh", "flush", "dev", "eth0", check=False)
        # Redirects the hypervisor sent in an earlier mode (unfiltered, the guests
        # accepted them) live on as route exceptions: start each run without them.
        lab.guest(g, "ip", "-6", "route", "flush", "cache", check=False)
        lab.guest(g, "ip", "-4", "route", "flush", "cache", check=False)
    return {name: bool(fn(lab)) for name, _d, fn in LEGIT}


def run_modes(lab, modes):
    lab.build()
    report = {}
    for mode in modes:
        lab.bind(mode)
        before = run_legit(lab)
        attacks = run_attacks(lab)
        effects = run_effect_attacks(lab)
        # The vulnerable baseline: fe80::1 re-added WITHOUT nodad (not the shipped way),
        # unfiltered only: the attack must work there, or the lab could not see it.
        baseline = list(gateway_dad(lab, nodad=False)) if mode == "unfiltered" else None
        services = run_services(lab)
        rogue_port = rogue(lab)
        duplicate = duplicate_mac(lab) if mode == "production" else None
        restored_ms = restore(lab) if mode == "production" else None
        after = run_legit(lab)
        report[mode] = dict(before=before, attacks=attacks, effects=effects, baseline=baseline, after=after,
                            services=services, rogue=rogue_port, duplicate=duplicate,
                            restored_ms=restored_ms)
        blocked = (sum(not v for v in attacks.values()) + sum(not v[1] for v in effects.values())
                   + sum(not v for v in services.values()) + sum(not v for v in rogue_port["after"].values()))
        total = len(attacks) + len(effects) + len(services) + len(rogue_port["after"])
        if duplicate is not None:
            blocked += duplicate["define_refused"] + duplicate["prepare_refused"]
            total += 2
        print(f"{mode}: {blocked}/{total} attacks blocked, "
              f"legit before {sum(before.values())}/{len(before)}, after {sum(after.values())}/{len(after)}",
              flush=True)
        if mode == "production":
            print(f"production: rogue port isolated after {rogue_port['isolated_ms']} ms, accepted: "
                  f"{rogue_port['accepted']}, `check` names it: {rogue_port['check_names_it']}; passed in its "
                  f"first second: {rogue_port['first_second']}; duplicate MAC: {duplicate}; tables flushed "
                  f"and deleted: restored by watch after {restored_ms} ms", flush=True)
    return report


def rogue_and_service_table(report, modes, failures):
    """The rows of the rogue port, the services and the duplicate MAC; failures appended."""
    lines = ["| attack (issue 14) | property | " + " | ".join(modes) + " |",
             "|---|---|" + "---|" * len(modes)]
    for name, prop, _pkt, points in ROGUE:
        cells = []
        for m in modes:
            r = report[m]["rogue"]
            got, first = r["after"][name], r["first_second"][name]
            if m == "unfiltered":
                cells.append("arrives" if got else "MISSING")
                if not got:
                    failures.append(f"control: rogue attack {name} did not arrive at {points}: the test cannot see it")
            else:
                cells.append(("blocked" if not got else f"PASSES to {','.join(got)}")
                             + (f" (first second: {','.join(first)})" if first else " (first second: nothing)"))
            if m == "production" and (got or first):
                failures.append(f"production: rogue attack {name} got through to {got or first}")
        lines.append(f"| `{name}` (rogue port) | {prop} | " + " | ".join(cells) + " |")
    for name, desc, _fn in SERVICES:
        cells = []
        for m in modes:
            got = report[m]["services"][name]
            if m == "unfiltered":
                cells.append("connects" if got else "MISSING")
                if not got:
                    failures.append(f"control: {name} ({desc}) does not connect without a filter")
            else:
                cells.append("CONNECTS" if got else "blocked")
            if m == "production" and got:
                failures.append(f"production: {name} ({desc}) connects")
        lines.append(f"| `{name}` (a) | {desc} | " + " | ".join(cells) + " |")
    if "production" in report:
        r = report["production"]["rogue"]
        if r["isolated_ms"] is None or r["accepted"] or not r["check_names_it"]:
            failures.append(f"production: the rogue port: isolated after {r['isolated_ms']} ms (watch), "
                            f"accepted {r['accepted']}, named by check {r['check_names_it']}")
        ms = report["production"]["restored_ms"]
        if ms is None or ms > 1000:
            failures.append(f"production: watch restored the flushed and deleted tables after {ms} ms")
        d = report["production"]["duplicate"]
        if not (d["define_refused"] and d["filter_unchanged"]):
            failures.append(f"production: nwfilter define of a domain with A's MAC: {d}")
        if not (d["prepare_refused"] and d["names_both"]):
            failures.append(f"production: hook prepare of a domain with A's MAC: {d}")
        cells = ["not run"] * (len(modes) - 1) + [
            "refused, A's filter unchanged" if d["define_refused"] and d["filter_unchanged"] else "ACCEPTED"]
        lines.append("| `duplicate-mac-define` (domain d) | a second domain with A's MAC: `nwfilter define` | "
                     + " | ".join(cells) + " |")
        cells[-1] = "refused naming both" if d["prepare_refused"] and d["names_both"] else "ACCEPTED"
        lines.append("| `duplicate-mac-prepare` (domain d) | a second domain with A's MAC: hook `prepare` | "
                     + " | ".join(cells) + " |")
        cells[-1] = f"restored in {ms} ms" if ms is not None and ms <= 1000 else f"NOT RESTORED ({ms} ms)"
        lines.append("| `tables-flushed-and-deleted` (host) | `nft flush table inet virt_l3`, "
                     "`nft delete table bridge virt_l3`: watch restores them and the accepted taps within 1 s | "
                     + " | ".join(cells) + " |")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--holder", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--modes", default="unfiltered,virt-l3,clean-traffic,production")
    ap.add_argument("--bin", required=True, help="the virt-l3 binary (mode production)")
    ap.add_argument("--markdown", help="write the result table here")
    args = ap.parse_args()
    lab = Lab(args.holder, args.prefix, args.work, args.bin)
    try:
        report = run_modes(lab, args.modes.split(","))
    finally:
        try:
            lab.bind("unfiltered")
        finally:
            lab.close()
    with open(os.path.join(args.work, "matrix.json"), "w") as f:
        json.dump(report, f, indent=1)

    failures = []
    modes = list(report)
    lines = rogue_and_service_table(report, modes, failures)

    def cell_attack(mode, name, points):
        got = report[mode]["attacks"][name]
        if mode == "unfiltered":
            return "arrives" if sorted(got) == sorted(points) else f"MISSING at {','.join(sorted(set(points) - set(got)))}"
        return "blocked" if not got else f"PASSES to {','.join(got)}"

    lines += ["", "| attack (from) | property | " + " | ".join(modes) + " |",
              "|---|---|" + "---|" * len(modes)]
    for name, prop, sender, _pkt, points in ATTACKS:
        cells = [cell_attack(m, name, points) for m in modes]
        lines.append(f"| `{name}` ({sender}) | {prop} | " + " | ".join(cells) + " |")
        if "unfiltered" in report and sorted(report["unfiltered"]["attacks"][name]) != sorted(points):
            failures.append(f"control: attack {name} did not arrive at {points} without a filter "
                            f"(got {report['unfiltered']['attacks'][name]}): the test cannot see it")
        for m in ("virt-l3", "production"):
            if m in report and report[m]["attacks"][name]:
                failures.append(f"{m}: attack {name} ({prop}) got through to {report[m]['attacks'][name]}")
    for name, prop, control, _run in EFFECT_ATTACKS:
        cells = []
        for m in modes:
            arrived, effect, detail = report[m]["effects"][name]
            if m == "unfiltered":
                cells.append(f"arrives ({detail})" if arrived else f"MISSING ({detail})")
            else:
                cells.append(("blocked" if not arrived else "no effect") + f" ({detail})" if not effect
                             else f"EFFECT ({detail})")
        lines.append(f"| `{name}` (a) | {prop} | " + " | ".join(cells) + " |")
        if "unfiltered" in report and not report["unfiltered"]["effects"][name][0]:
            failures.append(f"control: attack {name}: without a filter, not seen ({control}): the test cannot see it")
        for m in ("virt-l3", "production"):
            if m in report and report[m]["effects"][name][1]:
                failures.append(f"{m}: attack {name} ({prop}) had its effect: {report[m]['effects'][name][2]}")
    if "unfiltered" in report:
        arrived, effect, detail = report["unfiltered"]["baseline"]
        cells = [(f"EFFECT ({detail})" if effect else f"NO EFFECT ({detail})") if m == "unfiltered" else "not run"
                 for m in modes]
        lines.append("| `gateway-dad-readd-plain` (a) | the vulnerable baseline: the same with a plain "
                     "`ip address add` (no `nodad`, not the shipped way), unfiltered: the attack works | "
                     + " | ".join(cells) + " |")
        if not (arrived and effect):
            failures.append(f"control: fe80::1 re-added without nodad, unfiltered: the attack did not work "
                            f"({detail}): the test cannot see it")
    lines += ["", "| legitimate flow | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for name, desc, _fn in LEGIT:
        cells = []
        for m in modes:
            b, a = report[m]["before"][name], report[m]["after"][name]
            cells.append("works" if b and a else
                         f"FAILS ({'before' if not b else ''}{' and ' if not b and not a else ''}{'after' if not a else ''})")
            if m in ("unfiltered", "virt-l3", "production") and not (b and a):
                failures.append(f"{m}: legitimate flow {name} ({desc}) fails "
                                f"{'before' if not b else 'after'} the attacks")
        lines.append(f"| `{name}`: {desc} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    if failures:
        print("\nFAILURES:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
