# %preun of the .rpm: $1 is 0 on erase, 1 or more on upgrade (nothing to do then).
[ "$1" -eq 0 ] || exit 0
if command -v systemctl >/dev/null 2>&1; then
  if virt_l3_systemd; then
    systemctl stop $VIRT_L3_UNITS >/dev/null 2>&1 || true
  fi
  systemctl --no-reload disable $VIRT_L3_UNITS >/dev/null 2>&1 || true
fi
virt_l3_drop_hook
virt_l3_remove_firewall
virt_l3_warn_routed_domains
exit 0
