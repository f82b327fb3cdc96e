# shellcheck shell=bash
# tests/lib/libvirtd.sh: a private libvirtd in its own mount AND network namespace.
#
# Other people run their own libvirtd on the same machine at the same time, so a
# lab never touches the host's libvirtd, /run/libvirt, /etc/libvirt or network:
#
#   network namespace  `ip netns add vl3lab-NAME` (loopback up, nothing else)
#   mount namespace    `unshare --mount --propagation private`, kept alive by a
#                      holder process (`sleep infinity`); everything else enters
#                      it with `nsenter -t HOLDER -m -n`. Inside it:
#     /run                 private tmpfs (also /var/run, a symlink to /run): the
#                          daemons' sockets and pid files (/run/libvirt, /run/libvirtd.pid)
#     /etc                 overlay: host /etc below, writes land in LAB_DIR/etc.upper,
#                          so /etc/virt-l3/config.toml or /etc/frr/X can be written
#     /etc/libvirt         bind of LAB_DIR/etc-libvirt, a copy of the host's
#                          /etc/libvirt (hooks go in its hooks/qemu.d/); lab edits:
#                          none of the host's hooks, domains or virt-l3 nwfilters,
#                          no autostarted networks, no cgroups, no security driver,
#                          libvirtd logs to /var/log/libvirt/libvirtd.log
#     /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt
#                          binds of empty copies (directories, owners, modes) in LAB_DIR
#   Mounts die with the namespace; nothing propagates to the host.
#
# Usage (as root; `source tests/lib/libvirtd.sh`):
#   lab_start NAME               create the namespaces, start virtlogd + libvirtd, wait ready
#                                (~12 s: libvirtd probes QEMU's capabilities at each start)
#   lab_stop NAME                kill every process in the lab's namespaces, delete the
#                                netns and LAB_DIR (kept when LAB_KEEP=1); idempotent, safe
#                                in a trap. Returns 0 even when there is nothing to stop.
#   lab_exec NAME CMD...         run CMD inside both namespaces (use absolute paths for files)
#   lab_virsh NAME ARGS...       virsh -c qemu:///system ARGS, inside the lab
#   lab_write NAME PATH          stdin -> PATH inside the lab (e.g. /etc/virt-l3/config.toml)
#   lab_install_hook NAME FILE [HOOK]
#                                copy FILE to /etc/libvirt/hooks/qemu.d/HOOK (default: its
#                                basename), mode 0755; takes effect at the next
#                                lab_libvirtd_restart (libvirt scans hooks at start-up)
#   lab_libvirtd_start NAME / lab_libvirtd_stop NAME / lab_libvirtd_restart NAME
#                                (domains keep running across stop/start: qemu is not
#                                killed, libvirtd reconnects to it and runs `reconnect` hooks)
#   lab_dir NAME                 print LAB_DIR (host path of the lab's files)
#   lab_netns NAME               print the network namespace's name (for `ip netns exec`,
#                                `ip link set X netns ...`)
#   lab_pid NAME                 print the holder's pid
#   lab_log NAME [LINES]         print the tail of libvirtd's log (for failure reports)
#
# Settings (environment): LAB_TMP (parent of LAB_DIR, default /tmp), LAB_KEEP=1 (keep
# LAB_DIR after lab_stop, for its logs), LAB_LIBVIRTD=0 (lab_start without libvirtd).
#
# Typical test:
#   source tests/lib/libvirtd.sh
#   trap 'lab_stop t1' EXIT
#   lab_start t1
#   lab_exec t1 ip link add cloudbr0 type bridge
#   lab_virsh t1 define /path/dom.xml && lab_virsh t1 start dom
#
# Needs: iproute2, util-linux (unshare, nsenter), libvirt-daemon-system; overlayfs
# (without it /etc is a bind mount of a full copy, a few MB).

LAB_TMP=${LAB_TMP:-/tmp}

lab__die() {
  echo "lab: $*" >&2
  return 1
}

lab_dir() { printf '%s/virt-l3-lab.%s\n' "$LAB_TMP" "$1"; }
lab_netns() { printf 'vl3lab-%s\n' "$1"; }
lab_pid() {
  local f
  f="$(lab_dir "$1")/holder.pid"
  [ -s "$f" ] || return 1
  cat "$f"
}

# Whether the lab's holder process is alive and is still the one we started.
lab__alive() {
  local pid dir
  dir=$(lab_dir "$1")
  pid=$(lab_pid "$1" 2>/dev/null) || return 1
  [ -d "/proc/$pid" ] || return 1
  [ "$(readlink "/proc/$pid/ns/mnt")" = "$(cat "$dir/holder.mntns" 2>/dev/null)" ]
}

lab_exec() {
  local name=$1 pid
  shift
  pid=$(lab_pid "$name") || lab__die "lab $name is not running" || return 1
  nsenter -t "$pid" -m -n -- "$@"
}

lab_virsh() {
  local name=$1
  shift
  lab_exec "$name" virsh -q -c qemu:///system "$@"
}

lab_write() {
  lab_exec "$1" /bin/sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1"' sh "$2"
}

lab_log() {
  lab_exec "$1" tail -n "${2:-50}" /var/log/libvirt/libvirtd.log 2>/dev/null
}

lab_install_hook() {
  local name=$1 file=$2 hook=${3:-$(basename "$2")} d
  d="$(lab_dir "$name")/etc-libvirt/hooks/qemu.d"
  mkdir -p "$d"
  install -m 0755 "$file" "$d/$hook"
}

# Copies a directory tree's directories (not files), keeping owners and modes.
lab__copy_dirs() {
  local src=$1 dst=$2 d rel
  mkdir -p "$dst"
  [ -d "$src" ] || return 0
  while IFS= read -r -d '' d; do
    rel=${d#"$src"}
    mkdir -p "$dst$rel"
    chown --reference="$d" "$dst$rel"
    chmod --reference="$d" "$dst$rel"
  done < <(find "$src" -type d -print0)
}

lab__wait() { # TIMEOUT_SECONDS CMD... : poll CMD every 0.1 s until it succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

lab_libvirtd_start() {
  local name=$1
  lab_exec "$name" /bin/sh -c '[ -S /run/libvirt/virtlogd-sock ] || virtlogd -d' ||
    lab__die "$name: virtlogd did not start" || return 1
  lab_exec "$name" libvirtd -d || lab__die "$name: libvirtd did not start" || return 1
  lab__wait 90 lab_virsh "$name" version ||
    { lab_log "$name" 20 >&2; lab__die "$name: libvirtd does not answer"; return 1; }
}

lab_libvirtd_stop() {
  local name=$1 pid
  pid=$(lab_exec "$name" cat /run/libvirtd.pid 2>/dev/null) || return 0
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  lab__wait 30 lab__gone "$pid" || { kill -KILL "$pid" 2>/dev/null || true; }
  lab_exec "$name" rm -f /run/libvirtd.pid /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro
}

lab__gone() { [ ! -d "/proc/$1" ]; }

lab_libvirtd_restart() {
  lab_libvirtd_stop "$1" && lab_libvirtd_start "$1"
}

lab_start() {
  local name=$1 dir ns pid
  [ -n "$name" ] || lab__die "usage: lab_start NAME" || return 1
  [ "$(id -u)" = 0 ] || lab__die "lab_start needs root" || return 1
  # QEMU's tap NICs; a container or a minimal VM may lack the device (modprobe tun).
  [ -c /dev/net/tun ] || lab__die "lab_start needs /dev/net/tun for the domains' taps (modprobe tun)" || return 1
  dir=$(lab_dir "$name")
  ns=$(lab_netns "$name")
  if lab__alive "$name"; then
    lab__die "lab $name is already running (holder $(lab_pid "$name")); lab_stop it first"
    return 1
  fi
  lab_stop "$name" # leftovers of a crashed run under this name
  if ip netns list | grep -qx "$ns\( (id: [0-9]*)\)\?"; then
    lab__die "network namespace $ns exists and is not this lab's"
    return 1
  fi
  mkdir -p "$dir"/{etc.upper,etc.work,var-lib-libvirt,var-cache-libvirt,var-log-libvirt,tmp}
  chmod 0755 "$dir"
  cp -a /etc/libvirt "$dir/etc-libvirt"
  # The host's configuration files, none of its objects: a hypervisor's own hooks
  # (cloudstack-agent's hooks/qemu, an installed virt-l3), domains, autostarted networks
  # and virt-l3's nwfilters would run in the lab or be counted as the lab's.
  rm -rf "$dir/etc-libvirt/hooks" "$dir/etc-libvirt/qemu/autostart" "$dir"/etc-libvirt/qemu/networks/autostart/*
  find "$dir/etc-libvirt/qemu" -maxdepth 1 -name '*.xml' -delete
  rm -f "$dir"/etc-libvirt/nwfilter/virt-l3-*.xml
  mkdir -p "$dir/etc-libvirt/hooks/qemu.d"
  cat >>"$dir/etc-libvirt/qemu.conf" <<'EOF'

# virt-l3 lab (tests/lib/libvirtd.sh): cgroups are global to the machine and shared
# with other labs, so none; no MAC security driver. QEMU runs as root: when /dev/kvm is
# root-only (as on some CI VMs) and QEMU runs as libvirt-qemu, libvirt found its QEMU
# capabilities cache stale at every lookup and re-probed QEMU (~10 s per define/start).
cgroup_controllers = [ ]
security_driver = "none"
user = "root"
group = "root"
EOF
  cat >>"$dir/etc-libvirt/libvirtd.conf" <<'EOF'

# virt-l3 lab (tests/lib/libvirtd.sh)
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
  lab__copy_dirs /var/lib/libvirt "$dir/var-lib-libvirt"
  lab__copy_dirs /var/cache/libvirt "$dir/var-cache-libvirt"
  lab__copy_dirs /var/log/libvirt "$dir/var-log-libvirt"

  ip netns add "$ns" || return 1
  stat -L -c %i "/run/netns/$ns" >"$dir/netns.inode"
  ip -n "$ns" link set lo up

  # The holder: sets up the private mounts, then sleeps, keeping the namespaces alive.
  cat >"$dir/holder.sh" <<EOF
set -e
mount -t tmpfs -o mode=0755 lab-run /run
mkdir -p /run/libvirt /run/user /run/lock /run/frr
chmod 1777 /run/lock
chown frr:frr /run/frr 2>/dev/null || true
if mount -t overlay lab-etc -o lowerdir=/etc,upperdir=$dir/etc.upper,workdir=$dir/etc.work /etc; then
  mkdir -p /etc/virt-l3
else
  # No overlayfs: a plain copy of /etc.
  cp -a /etc/. $dir/etc.upper/
  mount --bind $dir/etc.upper /etc
  mkdir -p /etc/virt-l3
fi
mount --bind $dir/etc-libvirt /etc/libvirt
mount --bind $dir/var-lib-libvirt /var/lib/libvirt
mount --bind $dir/var-cache-libvirt /var/cache/libvirt
mount --bind $dir/var-log-libvirt /var/log/libvirt
touch $dir/holder.ready
exec sleep infinity
EOF
  setsid ip netns exec "$ns" unshare --mount --propagation private \
    /bin/bash "$dir/holder.sh" </dev/null >"$dir/holder.log" 2>&1 &
  pid=$!
  disown "$pid" 2>/dev/null || true # its death at lab_stop is expected: no "Killed" notice
  echo "$pid" >"$dir/holder.pid"
  if ! lab__wait 10 test -e "$dir/holder.ready"; then
    cat "$dir/holder.log" >&2
    lab__die "$name: the namespace holder did not come up"
    lab_stop "$name"
    return 1
  fi
  # unshare and bash exec'd in place: $pid is now the sleeping holder in the new namespaces.
  readlink "/proc/$pid/ns/mnt" >"$dir/holder.mntns"
  readlink "/proc/$pid/ns/net" >"$dir/holder.netns"
  if [ "$(cat "$dir/holder.mntns")" = "$(readlink /proc/self/ns/mnt)" ]; then
    lab__die "$name: the holder did not get its own mount namespace"
    lab_stop "$name"
    return 1
  fi
  if [ "${LAB_LIBVIRTD:-1}" != 0 ]; then
    lab_libvirtd_start "$name" || { lab_stop "$name"; return 1; }
  fi
}

# Pids of the processes in the lab's mount or network namespace, holder excepted.
lab__members() {
  local dir=$1 holder=$2 mnt net
  mnt=$(cat "$dir/holder.mntns" 2>/dev/null)
  net=$(cat "$dir/netns.inode" 2>/dev/null)
  [ -n "$mnt" ] || mnt=none
  [ -n "$net" ] && net="net:[$net]" || net=none
  # -lname takes a glob: escape the brackets of "mnt:[4026531840]".
  mnt=${mnt//[/\\[} mnt=${mnt//]/\\]} net=${net//[/\\[} net=${net//]/\\]}
  find /proc/[0-9]*/ns/mnt /proc/[0-9]*/ns/net -maxdepth 0 \( -lname "$mnt" -o -lname "$net" \) \
    2>/dev/null | cut -d/ -f3 | sort -u | grep -vx -e "$holder" -e "$$" || true
}

lab_stop() {
  local name=$1 dir ns holder pids i
  dir=$(lab_dir "$name")
  ns=$(lab_netns "$name")
  [ -d "$dir" ] || return 0
  holder=$(lab_pid "$name" 2>/dev/null || true)
  if [ -s "$dir/holder.mntns" ] || [ -s "$dir/netns.inode" ]; then
    pids=$(lab__members "$dir" "$holder")
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      for i in $(seq 50); do
        pids=$(lab__members "$dir" "$holder")
        [ -n "$pids" ] || break
        sleep 0.1
      done
      # shellcheck disable=SC2086
      [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    fi
  fi
  if [ -n "$holder" ] && lab__alive "$name"; then
    kill -KILL "$holder" 2>/dev/null || true
    lab__wait 5 lab__gone "$holder" || true
  fi
  # Only the netns this lab created (same inode), never someone else's of that name.
  if [ -s "$dir/netns.inode" ] && [ -e "/run/netns/$ns" ] &&
    [ "$(stat -L -c %i "/run/netns/$ns" 2>/dev/null)" = "$(cat "$dir/netns.inode")" ]; then
    ip netns del "$ns" 2>/dev/null || true
  fi
  if [ "${LAB_KEEP:-0}" = 1 ]; then
    echo "lab: kept $dir" >&2
  else
    rm -rf "$dir"
  fi
  return 0
}
