# shellcheck shell=bash
# tests/lib/guest.sh: a real, small Linux guest for the suites (issue 19), built from
# Debian's packages only and cached, configured from what `virt-l3 guest-config` says.
#
#   kernel     the cloud kernel: `linux-image-cloud-amd64` resolved to its versioned
#              package (linux-image-X-cloud-amd64), fetched with `apt-get download`;
#              its vmlinuz and the virtio modules (virtio_pci, virtio_net and their
#              dependencies, failover/net_failover among them, read from each module's
#              depends= field)
#   initramfs  busybox-static (also `apt-get download`ed, never installed) + the modules +
#              an /init (below), packed as a reproducible newc cpio (python3) and gzip -n
#   cache      GUEST_CACHE (default target/guest)/KEY/{vmlinuz,base.cpio.gz}, KEY made of
#              the two packages' versions and a hash of this file: a new kernel or busybox
#              in Debian, or a change here, builds a new guest; nothing else downloads
#   config     per domain, a second gzip'd cpio appended to the base initramfs (the kernel
#              unpacks concatenated archives): /etc/virt-l3/network-config.yaml, which is
#              `virt-l3 guest-config --format netplan` of the domain XML, verbatim, and
#              /etc/hostname. The guest's /init parses that netplan (busybox awk) and
#              applies exactly it: match macaddress, set-name, accept-ra, the /32 and /128
#              addresses, routes (to, via, on-link, table), routing-policy (from, table).
#              The IPv6 link-local is the kernel's own (EUI-64, addr_gen_mode 0).
#   services   the kernel answers ping; TCP 7 echoes (busybox nc -ll -e cat); TCP 8 answers
#              the guest's hostname and exits; TCP 9 is a shell (commands on the
#              connection, e.g. a ping the guest sends itself: guest_sh). A test guest in
#              namespaces that only the suite reaches, never an image to ship. Once the addresses are no longer tentative
#              (DAD done), the console prints "virt-l3-guest: ready HOSTNAME".
#
# Usage (source after e2e.sh):
#   guest_build                    fetch/build once (cached); sets GUEST_KERNEL, GUEST_BASE_INITRD
#   guest_domain NAME UUID DIR NIC...
#                                  e2e_domain's XML (same NIC syntax and CloudStack
#                                  metadata) + <kernel>/<initrd>/<cmdline>, GUEST_MEM MiB,
#                                  the serial console to DIR/NAME.console; the initrd path is
#                                  DIR/NAME.initrd (written by guest_initrd)
#   guest_initrd LAB NAME OUT      `virt-l3 guest-config` of the defined domain NAME, in the
#                                  lab -> OUT = base initramfs + config archive
#   guest_wait_ready CONSOLE SECS  wait for the ready marker in a console file
#   guest_tcp NETNS ADDR PORT TEXT connect from NETNS (bash /dev/tcp), send TEXT, print the
#                                  first line of the answer
#   guest_sh NETNS ADDR CMD...     run CMD in the guest (TCP 9), print its output
#
# Settings: GUEST_CACHE, GUEST_MEM (default 128), GUEST_CMDLINE_EXTRA.
# Needs: apt (for the first build only), dpkg-deb, gzip, python3, sha256sum.

GUEST_CACHE=${GUEST_CACHE:-$E2E_ROOT/target/guest}
GUEST_MEM=${GUEST_MEM:-128}
GUEST_MODULES="virtio_pci virtio_net"
GUEST_READY="virt-l3-guest: ready"

guest__die() {
  echo "guest: $*" >&2
  return 1
}

# The candidate version of a package, from apt's lists (an update when there are none).
guest__version() {
  local v
  v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  if [ -z "$v" ] || [ "$v" = "(none)" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
  fi
  [ -n "$v" ] && [ "$v" != "(none)" ] || return 1
  echo "$v"
}

# The versioned kernel package linux-image-cloud-amd64 depends on (its candidate).
guest__kernel_package() {
  apt-cache show --no-all-versions linux-image-cloud-amd64 2>/dev/null |
    awk -F': ' '/^Depends:/ { split($2, d, /[ ,]/); print d[1]; exit }'
}

# Module files of NAMES and their dependencies, dependencies first (depends= of .modinfo).
guest__module_order() { # KERNEL_MODULE_DIR NAME...
  local dir=$1 m f deps d
  shift
  declare -A seen=()
  visit() {
    local name=$1 file dep
    [ -z "${seen[$name]:-}" ] || return 0
    seen[$name]=1
    file=$(find "$dir" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n 1)
    [ -n "$file" ] || guest__die "module $name not found in $dir" || return 1
    deps=$(tr '\0' '\n' <"$file" | sed -n 's/^depends=//p' | head -n 1)
    for dep in ${deps//,/ }; do visit "$dep" || return 1; done
    echo "${file#"$dir"/}"
  }
  for m in "$@"; do visit "$m" || return 1; done
  unset -f visit
}

guest__init() {
  cat <<'INIT'
#!/bin/sh
# virt-l3 test guest (tests/lib/guest.sh): configures the network from netplan, serves.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
exec >/dev/console 2>&1
say() { echo "virt-l3-guest: $*"; }
say "init at $(cut -d' ' -f1 /proc/uptime) s"
hostname "$(cat /etc/hostname 2>/dev/null || echo guest)"
sysctl -qw net.ipv6.conf.default.accept_ra=0
for m in $(cat /etc/modules.order); do insmod "/lib/modules/$m" || say "insmod $m failed"; done
ip link set lo up
CFG=/etc/virt-l3/network-config.yaml
[ -s "$CFG" ] || say "no $CFG"
# netplan (as virt-l3 guest-config writes it) -> one command per line:
#   nic ID / mac ID MAC / name ID NAME / ra ID BOOL / addr ID CIDR /
#   route ID TO VIA ONLINK TABLE / rule ID FROM TABLE
awk '
  function unq(s) { gsub(/"/, "", s); return s }
  function flush() {
    if (kind == "route") print "route", id, to, via, onlink, table
    if (kind == "rule") print "rule", id, from, table
    kind = ""; to = via = from = ""; onlink = "false"; table = "main"
  }
  /^[ ]*#/ { next }
  /^  ethernets:/ { eth = 1; next }
  eth && /^    [^ ].*:[ ]*$/ { flush(); id = $1; sub(/:$/, "", id); sec = ""; print "nic", id; next }
  /^      [a-z-]+:/ { flush(); sec = $1; sub(/:$/, "", sec)
    if (sec == "set-name") print "name", id, unq($2)
    if (sec == "accept-ra") print "ra", id, $2
    next }
  sec == "match" && /macaddress:/ { print "mac", id, tolower(unq($2)); next }
  sec == "addresses" && /^        - / { print "addr", id, unq($2); next }
  sec == "routes" && /^        - to:/ { flush(); kind = "route"; to = unq($3); next }
  sec == "routing-policy" && /^        - from:/ { flush(); kind = "rule"; from = unq($3); next }
  /^          via:/ { via = unq($2); next }
  /^          on-link:/ { onlink = $2; next }
  /^          table:/ { table = $2; next }
  END { flush() }' "$CFG" >/etc/virt-l3/plan
dev_of() { # ID: the interface of a netplan id (after its rename)
  cat "/run/nic.$1" 2>/dev/null
}
mkdir -p /run
while read -r what id a b c d; do
  case "$what" in
  mac)
    n=0
    dev=""
    while [ -z "$dev" ] && [ "$n" -lt 100 ]; do
      for i in /sys/class/net/*; do
        [ "$(cat "$i/address")" = "$a" ] && dev=${i##*/}
      done
      [ -n "$dev" ] || { sleep 0.05; n=$((n + 1)); }
    done
    [ -n "$dev" ] || { say "no NIC with MAC $a for $id"; continue; }
    echo "$dev" >"/run/nic.$id" ;;
  name)
    dev=$(dev_of "$id") && ip link set "$dev" name "$a" && echo "$a" >"/run/nic.$id" ;;
  ra)
    dev=$(dev_of "$id") && [ "$a" = false ] && sysctl -qw "net.ipv6.conf.$dev.accept_ra=0" ;;
  addr)
    dev=$(dev_of "$id") || continue
    ip link set "$dev" up
    ip addr add "$a" dev "$dev" ;;
  route)
    dev=$(dev_of "$id") || continue
    ip link set "$dev" up
    case "$a" in *:*) f=-6 ;; *) f=-4 ;; esac
    if [ "$c" = true ]; then ip $f route add "$a" via "$b" dev "$dev" onlink table "$d"
    else ip $f route add "$a" via "$b" dev "$dev" table "$d"; fi ;;
  rule)
    case "$a" in *:*) f=-6 ;; *) f=-4 ;; esac
    ip $f rule add from "$a" table "$b" ;;
  esac || say "failed: $what $id $a $b $c $d"
done </etc/virt-l3/plan
# Ready once no address is tentative (IPv6 DAD done, ~1-2 s).
n=0
while ip -6 addr show | grep -q tentative && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
nc -ll -p 7 -e cat &
printf '#!/bin/sh\nhostname\n' >/bin/whoami-service
chmod +x /bin/whoami-service
nc -ll -p 8 -e /bin/whoami-service &
nc -ll -p 9 -e /bin/sh &
ip addr
ip -4 route; ip -6 route; ip rule
say "ready $(hostname) at $(cut -d' ' -f1 /proc/uptime) s"
while :; do sleep 3600; done
INIT
}

# A newc cpio of DIR on stdout, reproducible: sorted names, inodes counted from 1, owner
# root, mtime 0, no device numbers (busybox's and GNU cpio write the real inodes).
guest__cpio() { # DIR
  python3 - "$1" <<'PY'
import os, stat, sys
root = sys.argv[1]
out = sys.stdout.buffer
names = []
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        names.append(os.path.relpath(os.path.join(d, n), root))
def entry(ino, name, mode, data, nlink):
    hdr = "070701" + "".join("%08X" % v for v in (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    b = hdr.encode() + name.encode() + b"\0"
    b += b"\0" * (-len(b) % 4) + data
    out.write(b + b"\0" * (-len(data) % 4))
for i, name in enumerate(sorted(names), 1):
    path = os.path.join(root, name)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        data = os.readlink(path).encode()
    elif stat.S_ISREG(st.st_mode):
        data = open(path, "rb").read()
    else:
        data = b""
    entry(i, name, st.st_mode, data, 2 if stat.S_ISDIR(st.st_mode) else 1)
entry(0, "TRAILER!!!", 0, b"", 1)
PY
}

guest_build() {
  local kpkg kver bver key dir work deb m
  [ -z "${GUEST_KERNEL:-}" ] || return 0
  kpkg=$(guest__kernel_package) || true
  [ -n "$kpkg" ] || { apt-get update -qq >/dev/null 2>&1; kpkg=$(guest__kernel_package); }
  [ -n "$kpkg" ] || guest__die "apt does not know linux-image-cloud-amd64" || return 1
  kver=$(guest__version "$kpkg") || guest__die "no candidate for $kpkg" || return 1
  bver=$(guest__version busybox-static) || guest__die "no candidate for busybox-static" || return 1
  key=$(printf '%s\n' "$kpkg=$kver" "busybox-static=$bver" "$GUEST_MODULES" "$(cat "${BASH_SOURCE[0]}")" |
    sha256sum | cut -c1-16)
  dir=$GUEST_CACHE/$kpkg-$kver-bb$bver-$key
  dir=${dir//[:~]/_}
  GUEST_KERNEL=$dir/vmlinuz
  GUEST_BASE_INITRD=$dir/base.cpio.gz
  if [ -s "$GUEST_KERNEL" ] && [ -s "$GUEST_BASE_INITRD" ]; then
    return 0
  fi
  echo "guest: building $dir ($kpkg $kver, busybox-static $bver)" >&2
  work=$(mktemp -d "$GUEST_CACHE.work.XXXXXX") || return 1
  mkdir -p "$GUEST_CACHE/debs" "$work/deb" "$work/root"
  for deb in "$kpkg=$kver" "busybox-static=$bver"; do
    if ! ls "$GUEST_CACHE/debs/${deb%%=*}_"*.deb >/dev/null 2>&1 ||
      ! dpkg-deb -f "$(ls "$GUEST_CACHE/debs/${deb%%=*}_"*.deb | head -n 1)" Version | grep -qxF "${deb#*=}"; then
      rm -f "$GUEST_CACHE/debs/${deb%%=*}_"*.deb
      (cd "$GUEST_CACHE/debs" && apt-get download -q "$deb" >/dev/null 2>&1) ||
        { rm -rf "$work"; guest__die "apt-get download $deb failed"; return 1; }
    fi
  done
  dpkg-deb -x "$(ls "$GUEST_CACHE/debs/${kpkg}_"*.deb | head -n 1)" "$work/deb"
  dpkg-deb -x "$(ls "$GUEST_CACHE/debs/busybox-static_"*.deb | head -n 1)" "$work/deb"
  local bb=$work/deb/bin/busybox r=$work/root kmod
  kmod=$(ls -d "$work"/deb/lib/modules/*/kernel | head -n 1)
  mkdir -p "$r"/{bin,dev,proc,sys,run,tmp,etc/virt-l3,lib/modules}
  cp "$bb" "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  guest__module_order "$kmod" $GUEST_MODULES >"$r/etc/modules.order" || { rm -rf "$work"; return 1; }
  while read -r m; do
    mkdir -p "$r/lib/modules/$(dirname "$m")"
    cp "$kmod/$m" "$r/lib/modules/$m"
  done <"$r/etc/modules.order"
  guest__init >"$r/init"
  chmod 0755 "$r/init"
  mkdir -p "$dir"
  cp "$(ls "$work"/deb/boot/vmlinuz-* | head -n 1)" "$dir/vmlinuz.new"
  guest__cpio "$r" | gzip -9 -n >"$dir/base.cpio.gz.new" ||
    { rm -rf "$work"; guest__die "packing the initramfs failed"; return 1; }
  mv "$dir/vmlinuz.new" "$GUEST_KERNEL"
  mv "$dir/base.cpio.gz.new" "$GUEST_BASE_INITRD"
  rm -rf "$work"
  # Older builds (other versions or another guest.sh): only the newest is kept.
  find "$GUEST_CACHE" -mindepth 1 -maxdepth 1 -type d -name 'linux-image-*' ! -path "$dir" -exec rm -rf {} +
}

guest_initrd() { # LAB NAME OUT
  local lab=$1 name=$2 out=$3 work
  guest_build || return 1
  work=$(mktemp -d) || return 1
  mkdir -p "$work/etc/virt-l3"
  # The domain as libvirt has it (after `virt-l3 nwfilter inject`, if any), and the
  # lab's virt-l3 configuration (gateways): what an operator's tooling would run.
  lab_virsh "$lab" dumpxml "$name" >"$work/domain.xml" &&
    lab_exec "$lab" "$E2E_BIN" guest-config --format netplan <"$work/domain.xml" \
      >"$work/etc/virt-l3/network-config.yaml" ||
    { rm -rf "$work"; guest__die "virt-l3 guest-config failed for $name"; return 1; }
  rm "$work/domain.xml"
  echo "$name" >"$work/etc/hostname"
  { cat "$GUEST_BASE_INITRD"; guest__cpio "$work" | gzip -9 -n; } >"$out.new" && mv "$out.new" "$out"
  rm -rf "$work"
}

guest_domain() { # NAME UUID DIR NIC...
  local name=$1 uuid=$2 dir=$3 cmdline
  shift 3
  guest_build || return 1
  cmdline="console=ttyS0 panic=-1 loglevel=4 ${GUEST_CMDLINE_EXTRA:-}"
  e2e_domain "$name" "$uuid" "$@" | sed \
    -e "s|<memory unit='MiB'>32</memory>|<memory unit='MiB'>$GUEST_MEM</memory>|" \
    -e "s|<os><type arch='x86_64' machine='pc'>hvm</type></os>|<os><type arch='x86_64' machine='pc'>hvm</type><kernel>$GUEST_KERNEL</kernel><initrd>$dir/$name.initrd</initrd><cmdline>$cmdline</cmdline></os>|" \
    -e "s|<memballoon model='none'/>|<serial type='file'><source path='$dir/$name.console' append='on'/><target port='0'/></serial>\n    <memballoon model='none'/>|"
}

guest_wait_ready() { # CONSOLE SECONDS
  local deadline=$((SECONDS + $2))
  until grep -q "$GUEST_READY" "$1" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

guest_tcp() { # NETNS ADDR PORT TEXT: send TEXT and a newline, print the first line back
  ip netns exec "$1" timeout 10 bash -c \
    'exec 3<>"/dev/tcp/$1/$2" || exit 1; printf "%s\n" "$3" >&3; read -r -t 5 l <&3; printf "%s\n" "$l"' \
    _ "$2" "$3" "$4"
}

guest_sh() { # NETNS ADDR CMD...: the whole output, once the guest's shell exits
  ip netns exec "$1" timeout 30 bash -c \
    'exec 3<>"/dev/tcp/$1/9" || exit 1; printf "%s\nexit\n" "$2" >&3; timeout 25 cat <&3' _ "$2" "${*:3}"
}
