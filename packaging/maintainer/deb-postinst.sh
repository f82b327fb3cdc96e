# postinst of the .deb: configure, abort-upgrade, abort-remove, abort-deconfigure.
case "$1" in
  configure | abort-upgrade | abort-remove | abort-deconfigure) ;;
  *) exit 0 ;;
esac

virt_l3_install_hook
# A running libvirt knows the hook already unless it was just created.
[ -z "$VIRT_L3_HOOK_CREATED" ] || virt_l3_reload_libvirt
virt_l3_define_nwfilters

# Units: enabled on a new installation, the administrator's choice kept on
# upgrades (what debhelper's dh_installsystemd does). deb-systemd-helper works
# without a running systemd: it only writes the enablement links.
if command -v deb-systemd-helper >/dev/null 2>&1; then
  for unit in $VIRT_L3_UNITS; do
    deb-systemd-helper unmask "$unit" >/dev/null || true
    if deb-systemd-helper --quiet was-enabled "$unit"; then
      deb-systemd-helper enable "$unit" >/dev/null || true
    else
      deb-systemd-helper update-state "$unit" >/dev/null || true
    fi
  done
fi
if virt_l3_systemd; then
  systemctl --system daemon-reload >/dev/null 2>&1 || true
  for unit in $VIRT_L3_UNITS; do
    if [ -n "$2" ]; then action=try-restart; else action=start; fi
    # The reconcile unit runs once: start it on installation only.
    [ "$unit" = virt-l3-reconcile.service ] && [ "$action" = try-restart ] && continue
    if command -v deb-systemd-invoke >/dev/null 2>&1; then
      deb-systemd-invoke "$action" "$unit" >/dev/null 2>&1 || virt_l3_warn "warning: cannot $action $unit (see: systemctl status $unit)"
    else
      systemctl "$action" "$unit" >/dev/null 2>&1 || virt_l3_warn "warning: cannot $action $unit (see: systemctl status $unit)"
    fi
  done
fi
exit 0
