# postrm of the .deb: remove, purge, upgrade, disappear, abort-install, abort-upgrade, failed-upgrade.
case "$1" in
  remove | abort-install)
    # The prerm removed the tables with the binary; without it (abort-install)
    # they are removed by name.
    virt_l3_remove_tables_by_name
    virt_l3_drop_hook
    virt_l3_reload_libvirt
    if command -v deb-systemd-helper >/dev/null 2>&1; then
      for unit in $VIRT_L3_UNITS; do
        deb-systemd-helper mask "$unit" >/dev/null || true
      done
    fi
    ;;
  purge | disappear)
    virt_l3_drop_hook
    virt_l3_undefine_nwfilters
    if command -v deb-systemd-helper >/dev/null 2>&1; then
      for unit in $VIRT_L3_UNITS; do
        deb-systemd-helper purge "$unit" >/dev/null || true
        deb-systemd-helper unmask "$unit" >/dev/null || true
      done
    fi
    # dpkg deletes the conffile; the directory may hold more (backups, local files).
    rm -rf /etc/virt-l3
    # Records of routed domains (a tmpfs: gone at reboot anyway).
    rm -rf /run/virt-l3
    ;;
esac
if virt_l3_systemd; then
  systemctl --system daemon-reload >/dev/null 2>&1 || true
fi
exit 0
