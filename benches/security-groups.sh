#!/bin/sh
# Applying one VM's 20-rule security group on a host with N VMs (default 10,000)
# of 20 rules each (docs/BENCHMARKS.md, issue 16). Root; runs in a network
# namespace; needs nft and python3, and the virt-l3 binary ($VIRT_L3, default
# target/debug/virt-l3).
#   sh benches/security-groups.sh [N]
set -eu
N=${1:-10000}
VIRT_L3=${VIRT_L3:-target/debug/virt-l3}
NS=sgbench$$
DIR=$(mktemp -d)
trap 'ip netns del $NS 2>/dev/null; rm -rf $DIR' EXIT
ip netns add $NS
ip netns exec $NS nft -f testdata/firewall/default.nft

# 20 rules: 12 ingress, 8 egress, IPv4 and IPv6 networks, ports, ICMP.
RULES='I:tcp;22;22;0.0.0.0/0,::/0,NEXT;I:tcp;80;80;0.0.0.0/0,::/0,NEXT;I:tcp;443;443;0.0.0.0/0,::/0,NEXT;I:tcp;8000;8100;198.51.100.0/24,2001:db8:1::/48,NEXT;I:udp;53;53;192.0.2.0/24,NEXT;I:udp;123;123;192.0.2.0/24,NEXT;I:icmp;8;-1;0.0.0.0/0,NEXT;I:icmp;128;-1;::/0,NEXT;I:tcp;3306;3306;10.1.0.0/16,10.2.0.0/16,NEXT;I:tcp;5432;5432;10.3.0.0/16,NEXT;I:udp;4789;4789;10.4.0.0/16,NEXT;I:47;0;0;10.5.0.0/16,NEXT;E:tcp;80;80;0.0.0.0/0,::/0,NEXT;E:tcp;443;443;0.0.0.0/0,::/0,NEXT;E:udp;53;53;0.0.0.0/0,::/0,NEXT;E:udp;123;123;0.0.0.0/0,NEXT;E:tcp;25;25;203.0.113.0/24,NEXT;E:icmp;-1;-1;0.0.0.0/0,NEXT;E:tcp;5000;6000;10.0.0.0/8,NEXT;E:all;0;0;10.9.0.0/16,NEXT;'

# N VMs through virt-l3's own renderer: `security-group render` of a template
# domain, its UUID and addresses substituted per VM, loaded in batches of 500.
mkdir -m 0700 -p $DIR/state
printf 'state_dir = "%s/state"\nsecurity_groups = true\n' $DIR > $DIR/config.toml
TPL=00000000-0000-4000-8000-000000000000
$VIRT_L3 --config $DIR/config.toml security-group set $TPL "$RULES" >/dev/null
$VIRT_L3 --config $DIR/config.toml security-group render $TPL | grep -v '^#' > $DIR/template.nft
python3 - "$N" "$DIR" <<'PY'
import sys
n, d = int(sys.argv[1]), sys.argv[2]
tpl = open(f"{d}/template.nft").read()
batch = []
for i in range(n):
    u = f"00000000-0000-4000-8000-{i+1:012d}"
    t = tpl.replace("00000000-0000-4000-8000-000000000000", u)
    a4, a6 = f"100.{64 + i // 65536}.{i // 256 % 256}.{i % 256}", f"2001:db8:64::{i+1:x}"
    for m, a in (("vm_ingress4", a4), ("vm_egress4", a4)):
        t += f"add element inet virt_l3 {m} {{ {a} : jump sg_{'in' if 'ingress' in m else 'out'}_{u} }}\n"
    for m, a in (("vm_ingress6", a6), ("vm_egress6", a6)):
        t += f"add element inet virt_l3 {m} {{ {a} : jump sg_{'in' if 'ingress' in m else 'out'}_{u} }}\n"
    batch.append(t)
    if len(batch) == 500 or i == n - 1:
        open(f"{d}/batch-{i:06d}.nft", "w").write("".join(batch)); batch = []
PY
start=$(date +%s.%N)
for f in $DIR/batch-*.nft; do ip netns exec $NS nft -f $f; done
end=$(date +%s.%N)
echo "loaded $N VMs in $(python3 -c "print(round($end-$start,1))") s"
echo "rules in sg_ chains: $(ip netns exec $NS nft list table inet virt_l3 | awk '/chain sg_/{c=1;next} c&&/^\t}/{c=0} c' | wc -l)"
echo "per-packet path (forward): $(ip netns exec $NS nft list chain inet virt_l3 guest_ingress | grep vmap | tr -s '\t' ' ' | paste -sd';')"

# One VM's 20-rule group replaced (the transaction virt-l3 runs), 20 times.
U=00000000-0000-4000-8000-$(printf %012d $((N / 2)))
sed "s/$TPL/$U/g" $DIR/template.nft > $DIR/one.nft
I=$((N / 2 - 1))
A4=100.$((64 + I / 65536)).$((I / 256 % 256)).$((I % 256)); A6=2001:db8:64::$(printf %x $((I + 1)))
for m in in:4:$A4 out:4:$A4 in:6:$A6 out:6:$A6; do
    d=${m%%:*}; rest=${m#*:}; f=${rest%%:*}; a=${rest#*:}
    [ $d = in ] && map=vm_ingress$f || map=vm_egress$f
    echo "add element inet virt_l3 $map { $a : jump sg_${d}_$U }" >> $DIR/one.nft
done
python3 - "$NS" "$DIR/one.nft" <<'PY'
import subprocess, sys, time
ns, f = sys.argv[1], sys.argv[2]
ts = []
for _ in range(20):
    t = time.perf_counter(); subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", f], check=True); ts.append(time.perf_counter() - t)
ts.sort()
print(f"apply one 20-rule group (nft -f, one transaction): median {ts[10]*1000:.0f} ms, max {ts[-1]*1000:.0f} ms")
PY
