# virt-l3 maintainer-script functions, shared by the .deb and the .rpm.
# scripts/package.sh puts this file in front of each script body
# (packaging/maintainer/{deb,rpm}-*.sh). Nothing here may fail the package
# operation: libvirtd or systemd not running is normal (containers, chroots,
# image builds), so every step only warns.

VIRT_L3_BIN=/usr/bin/virt-l3
VIRT_L3_HOOK_DIR=/etc/libvirt/hooks/qemu.d
VIRT_L3_HOOK=$VIRT_L3_HOOK_DIR/virt-l3
VIRT_L3_UNITS="virt-l3-reconcile.service virt-l3-watch.service"

virt_l3_warn() {
  echo "virt-l3: $*" >&2
}

# Whether systemd manages this boot.
virt_l3_systemd() {
  [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# Pids of the running libvirt daemons that run qemu hooks: the monolithic
# libvirtd or the modular virtqemud, each found by its pid file and checked by
# its name (a stale pid file may name another process).
virt_l3_libvirt_pids() {
  for daemon in libvirtd virtqemud; do
    pid=$(cat "/run/$daemon.pid" 2>/dev/null) || continue
    case "$pid" in '' | *[!0-9]*) continue ;; esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$daemon" ] && echo "$daemon:$pid"
  done
  return 0
}

virt_l3_libvirt_running() {
  [ -n "$(virt_l3_libvirt_pids)" ]
}

# libvirt looks for hooks when the daemon starts and when it reloads (SIGHUP):
# tell a running daemon, so that it runs a new hook without a restart.
virt_l3_reload_libvirt() {
  reloaded=
  if virt_l3_systemd; then
    for unit in libvirtd.service virtqemud.service; do
      if systemctl is-active --quiet "$unit" 2>/dev/null; then
        if systemctl reload "$unit"; then
          reloaded=1
          echo "virt-l3: reloaded $unit (it rescans its hooks)"
        else
          virt_l3_warn "warning: cannot reload $unit; restart it to make it rescan its hooks"
        fi
      fi
    done
  fi
  if [ -z "$reloaded" ]; then
    for entry in $(virt_l3_libvirt_pids); do
      if kill -HUP "${entry#*:}" 2>/dev/null; then
        echo "virt-l3: sent SIGHUP to ${entry%%:*} (pid ${entry#*:}): it rescans its hooks"
      else
        virt_l3_warn "warning: cannot signal ${entry%%:*} (pid ${entry#*:}); restart it to make it rescan its hooks"
      fi
    done
  fi
  return 0
}

# Set to 1 by virt_l3_install_hook when it created the entry (libvirt must rescan).
VIRT_L3_HOOK_CREATED=

# The hook entry: a symlink to the binary, which runs in hook mode when called
# through a path in hooks/qemu.d/ (libvirt follows the symlink: it needs an
# executable regular file at the end of it). Installed beside any
# /etc/libvirt/hooks/qemu (cloudstack-agent rewrites that one on every install).
virt_l3_install_hook() {
  if [ -L "$VIRT_L3_HOOK" ] && [ "$(readlink "$VIRT_L3_HOOK")" = "$VIRT_L3_BIN" ]; then
    return 0
  fi
  if [ -e "$VIRT_L3_HOOK" ] && [ ! -L "$VIRT_L3_HOOK" ]; then
    virt_l3_warn "warning: $VIRT_L3_HOOK exists and is not a symlink; leaving it alone"
    return 0
  fi
  mkdir -p "$VIRT_L3_HOOK_DIR" || { virt_l3_warn "warning: cannot create $VIRT_L3_HOOK_DIR"; return 0; }
  # Made beside qemu.d and renamed into it: libvirt never sees a half-made entry.
  tmp=/etc/libvirt/hooks/.virt-l3.new
  rm -f "$tmp"
  if ln -s "$VIRT_L3_BIN" "$tmp" && mv -f -T "$tmp" "$VIRT_L3_HOOK"; then
    VIRT_L3_HOOK_CREATED=1
    echo "virt-l3: installed the libvirt hook $VIRT_L3_HOOK -> $VIRT_L3_BIN"
  else
    rm -f "$tmp"
    virt_l3_warn "warning: cannot install the libvirt hook $VIRT_L3_HOOK"
  fi
  return 0
}

# Drops the hook entry, but only ours (a symlink to the binary).
virt_l3_drop_hook() {
  if [ -L "$VIRT_L3_HOOK" ] && [ "$(readlink "$VIRT_L3_HOOK")" = "$VIRT_L3_BIN" ]; then
    rm -f "$VIRT_L3_HOOK" && echo "virt-l3: removed the libvirt hook $VIRT_L3_HOOK"
  fi
  rm -f /etc/libvirt/hooks/.virt-l3.new
  return 0
}

VIRT_L3_TEMPLATES=/usr/share/virt-l3/nwfilter-templates

# virsh against the system QEMU connection, bounded in time (a hung daemon
# must not hang the package manager).
virt_l3_virsh() {
  if command -v timeout >/dev/null 2>&1; then
    timeout 60 virsh -q -c qemu:///system "$@"
  else
    virsh -q -c qemu:///system "$@"
  fi
}

# Whether libvirt runs and virsh is there to talk to it.
virt_l3_libvirt_reachable() {
  command -v virsh >/dev/null 2>&1 || return 1
  virt_l3_libvirt_running && return 0
  virt_l3_systemd && systemctl is-active --quiet libvirtd.service virtqemud.service 2>/dev/null
}

# Defines or refreshes the base nwfilters (the address-independent building
# blocks every per-NIC filter references) from the shipped templates, when
# libvirt runs. An existing filter keeps its UUID (libvirt refuses a
# redefinition under a new one).
virt_l3_define_nwfilters() {
  [ -d "$VIRT_L3_TEMPLATES" ] || return 0
  if ! virt_l3_libvirt_reachable; then
    echo "virt-l3: libvirt does not run; define the nwfilters in $VIRT_L3_TEMPLATES once it does (virsh nwfilter-define FILE)"
    return 0
  fi
  list=$(virt_l3_virsh nwfilter-list 2>/dev/null) || {
    virt_l3_warn "warning: cannot list libvirt's nwfilters; define the ones in $VIRT_L3_TEMPLATES by hand"
    return 0
  }
  for file in "$VIRT_L3_TEMPLATES"/*.xml; do
    [ -f "$file" ] || continue
    name=$(sed -n "s/^<filter name='\([^']*\)'.*/\1/p" "$file" | head -n 1)
    [ -n "$name" ] || { virt_l3_warn "warning: no filter name in $file"; continue; }
    uuid=$(printf '%s\n' "$list" | awk -v n="$name" '$2 == n { print $1 }')
    tmp=$(mktemp) || continue
    if [ -n "$uuid" ]; then
      sed "s|^\(<filter name='$name'[^>]*>\)\$|\1\n  <uuid>$uuid</uuid>|" "$file" >"$tmp"
    else
      cat "$file" >"$tmp"
    fi
    if virt_l3_virsh nwfilter-define "$tmp" >/dev/null; then
      echo "virt-l3: ${uuid:+re}defined the nwfilter $name"
    else
      virt_l3_warn "warning: cannot define the nwfilter $name from $file"
    fi
    rm -f "$tmp"
  done
  return 0
}

# Undefines the base nwfilters, when libvirt runs. The templates are gone by
# then, so they are found by name: every template is named virt-l3-no-*
# (tests/suites/package.sh checks that). A filter still referenced (by the
# per-NIC filter of a domain) stays.
virt_l3_undefine_nwfilters() {
  virt_l3_libvirt_reachable || return 0
  names=$(virt_l3_virsh nwfilter-list 2>/dev/null | awk '$2 ~ /^virt-l3-no-[a-z0-9-]+$/ { print $2 }')
  for name in $names; do
    if virt_l3_virsh nwfilter-undefine "$name" >/dev/null 2>&1; then
      echo "virt-l3: undefined the nwfilter $name"
    else
      virt_l3_warn "warning: the nwfilter $name stays in libvirt (still in use?)"
    fi
  done
  return 0
}

# Removes virt-l3's nftables tables (docs/FIREWALL.md) while the binary is
# still there: without the hook nothing would accept the ports of new domains,
# which the bridge table would keep blocked.
virt_l3_remove_firewall() {
  [ -x "$VIRT_L3_BIN" ] || return 0
  if "$VIRT_L3_BIN" firewall remove >/dev/null 2>&1; then
    echo "virt-l3: removed virt-l3's nftables tables"
  else
    virt_l3_warn "warning: cannot remove virt-l3's nftables tables; remove them by hand: nft delete table inet virt_l3; nft delete table bridge virt_l3; nft delete table netdev virt_l3"
  fi
  return 0
}

# After the binary is gone: the tables by name, with nft, if any is left.
virt_l3_remove_tables_by_name() {
  command -v nft >/dev/null 2>&1 || return 0
  for family in inet bridge netdev; do
    if nft list table "$family" virt_l3 >/dev/null 2>&1; then
      nft delete table "$family" virt_l3 && echo "virt-l3: removed the nftables table $family virt_l3"
    fi
  done
  return 0
}

# Warns when routed domains are left behind: their routes stay in the kernel
# until removed by hand (without the hook, nothing removes them when they stop).
virt_l3_warn_routed_domains() {
  n=$(ls /run/virt-l3/domains/*.json 2>/dev/null | wc -l)
  if [ "$n" -gt 0 ]; then
    virt_l3_warn "warning: $n domain(s) still routed (records in /run/virt-l3/domains/): their routes stay in the kernel until removed by hand ('ip route show proto 52', or the configured route_protocol)"
  fi
  return 0
}
