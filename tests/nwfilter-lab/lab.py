"""The lab of the nwfilter traffic matrix (tests/nwfilter-lab/matrix.py): its addresses, the
guests, and the Lab class that builds the topology in the lab's namespace, binds each mode's
filters, sends frames and captures what arrives.
"""

import contextlib
import ctypes
import os
import re
import select
import socket
import subprocess
import time

from scapy.all import conf

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
A, B, C = GUESTS["a"], GUESTS["b"], GUESTS["c"]
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


def tcp(lab, where, addr, port):
    code = f"import socket; socket.create_connection(({addr!r}, {port}), timeout=1.5)"
    return lab.guest(where, "timeout", "3", "/usr/bin/python3", "-c", code, check=False).returncode == 0


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
