# prerm of the .deb: remove, upgrade, deconfigure, failed-upgrade.
# On removal: stop the units and drop the hook while the binary is still there,
# so that libvirt never finds a dangling hook. On upgrade: keep everything
# running; dpkg replaces the binary in place.
case "$1" in
  remove | deconfigure) ;;
  *) exit 0 ;;
esac

if virt_l3_systemd; then
  for unit in $VIRT_L3_UNITS; do
    if command -v deb-systemd-invoke >/dev/null 2>&1; then
      deb-systemd-invoke stop "$unit" >/dev/null 2>&1 || true
    else
      systemctl stop "$unit" >/dev/null 2>&1 || true
    fi
  done
fi
virt_l3_drop_hook
virt_l3_remove_firewall
virt_l3_warn_routed_domains
exit 0
