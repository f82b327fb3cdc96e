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

# Defines or refreshes virt-l3's base nwfilters in a running libvirt, when this
# version of virt-l3 has the command for it.
virt_l3_define_nwfilters() {
  [ -x "$VIRT_L3_BIN" ] || return 0
  "$VIRT_L3_BIN" nwfilter define --help >/dev/null 2>&1 || return 0
  if ! virt_l3_libvirt_running && ! { virt_l3_systemd && systemctl is-active --quiet libvirtd.service virtqemud.service 2>/dev/null; }; then
    echo "virt-l3: libvirt does not run; run 'virt-l3 nwfilter define' once it does"
    return 0
  fi
  if command -v timeout >/dev/null 2>&1; then
    set -- timeout 120 "$VIRT_L3_BIN" nwfilter define
  else
    set -- "$VIRT_L3_BIN" nwfilter define
  fi
  if "$@"; then
    echo "virt-l3: defined the base nwfilters"
  else
    virt_l3_warn "warning: 'virt-l3 nwfilter define' failed; run it again once libvirt works"
  fi
  return 0
}

# Warns when routed domains are left behind: their routes stay in the kernel
# until they stop (without the hook, nothing removes them then).
virt_l3_warn_routed_domains() {
  if [ -d /run/virt-l3 ] && [ -n "$(ls -A /run/virt-l3 2>/dev/null)" ]; then
    virt_l3_warn "warning: /run/virt-l3 holds records of routed domains; their routes stay until removed by hand (ip route flush proto 52, or the configured route_protocol)"
  fi
  return 0
}
