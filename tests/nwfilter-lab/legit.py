"""The legitimate flows of the nwfilter traffic matrix: what must keep working in every mode.
"""

import os
import sys
import time

import yaml

from scapy.all import Ether, ICMPv6ND_NS, IPv6

from lab import A, B, C, GUESTS, GW4, GW_MAC, UP4, UP6, eui64
from attacks import qemu_announce


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
