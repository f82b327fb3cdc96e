#!/bin/sh
# Security groups on a host with N VMs (default 10,000) of 20 rules each
# (docs/BENCHMARKS.md, issue 16): every VM's rules are elements of the table's
# global sets. Loads all N, then replaces one VM's 20-rule group with
# `virt-l3 security-group set` (one in-process nfnetlink batch, no nft fork;
# median of 21), and shows the per-packet path. Root; runs in a network
# namespace; needs nft and python3, and the virt-l3 binary ($VIRT_L3, default
# target/debug/virt-l3).
#   sh benches/security-groups.sh [N]
set -eu
"$(dirname "$0")/../scripts/deps.sh" bench # hyperfine, valgrind, GNU time, python3: never what the host happens to hold
N=${1:-10000}
VIRT_L3=${VIRT_L3:-target/debug/virt-l3}
NS=sgbench$$
DIR=$(mktemp -d)
trap 'ip netns del $NS 2>/dev/null; rm -rf $DIR' EXIT
ip netns add $NS
ip netns exec $NS nft -f testdata/firewall/default.nft

# 20 rules: 12 ingress, 8 egress, IPv4 and IPv6 networks, ports, ICMP.
RULES='I:tcp;22;22;0.0.0.0/0,::/0,NEXT;I:tcp;80;80;0.0.0.0/0,::/0,NEXT;I:tcp;443;443;0.0.0.0/0,::/0,NEXT;I:tcp;8000;8100;198.51.100.0/24,2001:db8:1::/48,NEXT;I:udp;53;53;192.0.2.0/24,NEXT;I:udp;123;123;192.0.2.0/24,NEXT;I:icmp;8;-1;0.0.0.0/0,NEXT;I:icmp;128;-1;::/0,NEXT;I:tcp;3306;3306;10.1.0.0/16,10.2.0.0/16,NEXT;I:tcp;5432;5432;10.3.0.0/16,NEXT;I:udp;4789;4789;10.4.0.0/16,NEXT;I:47;0;0;10.5.0.0/16,NEXT;E:tcp;80;80;0.0.0.0/0,::/0,NEXT;E:tcp;443;443;0.0.0.0/0,::/0,NEXT;E:udp;53;53;0.0.0.0/0,::/0,NEXT;E:udp;123;123;0.0.0.0/0,NEXT;E:tcp;25;25;203.0.113.0/24,NEXT;E:icmp;-1;-1;0.0.0.0/0,NEXT;E:tcp;5000;6000;10.0.0.0/8,NEXT;E:all;0;0;10.9.0.0/16,NEXT;'
# Another 20-rule group (other ports and networks), to switch to and back.
OTHER=$(echo "$RULES" | sed 's/;22;22;/;2222;2222;/; s/10\.1\.0\.0/10.11.0.0/; s/;8000;8100;/;9000;9100;/; s/;5000;6000;/;7000;7100;/')

# N VMs: a record and stored rules each (as the hook and `security-group set`
# leave them); their elements rendered by virt-l3 for VM 1 (`security-group
# render`), the addresses substituted per VM, loaded in batches of 500 VMs.
mkdir -m 0700 -p $DIR/state
printf 'state_dir = "%s/state"\nsecurity_groups = true\n' $DIR > $DIR/config.toml
$VIRT_L3 --config $DIR/config.toml security-group set 00000000-0000-4000-8000-000000000000 "" >/dev/null
python3 - "$N" "$DIR" "$RULES" <<'PY'
import json, os, sys
n, d, rules = int(sys.argv[1]), sys.argv[2], sys.argv[3]
os.makedirs(f"{d}/state/domains", mode=0o700, exist_ok=True)
for i in range(1, n + 1):
    u = f"00000000-0000-4000-8000-{i:012d}"
    a4, a6 = f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}", f"2001:db8:64::{i:x}"
    rec = {"name": f"i-2-{i}-VM", "uuid": u, "metric": 100, "protocol": 52,
           "nics": [{"mac": f"52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                     "bridge": "cloudbr0", "tap": f"vnet{i}", "addresses": [a4, a6]}]}
    json.dump(rec, open(f"{d}/state/domains/{u}.json", "w"))
    json.dump({"uuid": u, "name": f"i-2-{i}-VM", "rules": rules, "set_at_ms": 0, "applied": [a4, a6]},
              open(f"{d}/state/security-groups/{u}.json", "w"))
PY
$VIRT_L3 --config $DIR/config.toml security-group render 00000000-0000-4000-8000-000000000001 | grep -v '^#' > $DIR/template.nft
python3 - "$N" "$DIR" <<'PY'
import re, socket, sys
n, d = int(sys.argv[1]), sys.argv[2]
tpl = open(f"{d}/template.nft").read()
def shard(a):  # as security_group::elements::shard (FNV-1a of the address bytes, 64 shards)
    h = 0x811c9dc5
    for b in socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a):
        h = ((h ^ b) * 0x01000193) & 0xffffffff
    return h % 64
batch = []
for i in range(1, n + 1):
    a4, a6 = f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}", f"2001:db8:64::{i:x}"
    t = re.sub(r"(?<![\w.:])100\.64\.0\.1(?![\w.:/])", a4, tpl)
    t = re.sub(r"\b((?:sg|security)_(?:in|out)4(?:_[a-z]+)?)_[0-9a-f]{2}\b", lambda m: f"{m.group(1)}_{shard(a4):02x}", t)
    t = re.sub(r"(?<![\w.:])2001:db8:64::1(?![\w.:/])", a6, t)
    t = re.sub(r"\b((?:sg|security)_(?:in|out)6(?:_[a-z]+)?)_[0-9a-f]{2}\b", lambda m: f"{m.group(1)}_{shard(a6):02x}", t)
    batch.append(t)
    if len(batch) == 500 or i == n:
        open(f"{d}/batch-{i:06d}.nft", "w").write("".join(batch)); batch = []
PY
start=$(date +%s.%N)
for f in $DIR/batch-*.nft; do ip netns exec $NS nft -f $f; done
end=$(date +%s.%N)
echo "loaded $N VMs ($(wc -l < $DIR/template.nft) elements each) in $(python3 -c "print(round($end-$start,1))") s"
echo "elements in the sets: $((N * $(wc -l < $DIR/template.nft)))"
echo "per-packet path (forward, to a VM): $(ip netns exec $NS nft list chain inet virt_l3 guest_ingress | grep vmap | tr -s '\t' ' ' | paste -sd';')"
echo "  then security_in4_XX: $(ip netns exec $NS nft list chain inet virt_l3 security_in4_00 | grep -c 'return\|drop') rules (set lookups), whatever N"

# One VM's 20-rule group replaced, alternately OTHER and RULES, 21 times: the
# CLI (process start, state, one netlink batch); `security-group show` as the
# baseline of process start and state reading.
U=00000000-0000-4000-8000-$(printf %012d $((N / 2)))
python3 - "$NS" "$VIRT_L3" "$DIR/config.toml" "$U" "$RULES" "$OTHER" <<'PY'
import subprocess, sys, time
ns, bin, cfg, u, rules, other = sys.argv[1:]
def run(*args):
    t = time.perf_counter()
    subprocess.run(["ip", "netns", "exec", ns, bin, "--config", cfg, "security-group", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t
sets = sorted(run("set", u, other if k % 2 == 0 else rules) for k in range(21))
shows = sorted(run("show", u) for _ in range(21))
print(f"replace one 20-rule group (security-group set, in-process netlink batch): median {sets[10]*1000:.1f} ms, max {sets[-1]*1000:.1f} ms")
print(f"baseline (security-group show: process start, state): median {shows[10]*1000:.1f} ms")
PY
A4=100.$((64 + N / 2 / 65536)).$((N / 2 / 256 % 256)).$((N / 2 % 256))
S=$(ip netns exec $NS nft list map inet virt_l3 sg_vms4 | grep -o "$A4 : jump security_in4_[0-9a-f]*" | sed 's/.*_//')
echo "the VM's elements now (shard $S): $(ip netns exec $NS nft list set inet virt_l3 sg_in4_ports_$S | grep -o "$A4 \. [^,}]*" | head -3 | paste -sd';')"
