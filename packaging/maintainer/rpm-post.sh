# %post of the .rpm: $1 is 1 on installation, 2 or more on upgrade.
virt_l3_install_hook
# A running libvirt knows the hook already unless it was just created.
[ -z "$VIRT_L3_HOOK_CREATED" ] || virt_l3_reload_libvirt
virt_l3_define_nwfilters

if command -v systemctl >/dev/null 2>&1; then
  if [ "$1" -eq 1 ]; then
    # Enabled on installation (works without a running systemd: links only).
    systemctl --no-reload enable $VIRT_L3_UNITS >/dev/null 2>&1 || virt_l3_warn "warning: cannot enable $VIRT_L3_UNITS"
  fi
  if virt_l3_systemd; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$1" -eq 1 ]; then
      systemctl start $VIRT_L3_UNITS >/dev/null 2>&1 || virt_l3_warn "warning: cannot start $VIRT_L3_UNITS (see: systemctl status)"
    else
      systemctl try-restart virt-l3-watch.service >/dev/null 2>&1 || true
    fi
  fi
fi
exit 0
