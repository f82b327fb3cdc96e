# %postun of the .rpm: $1 is 0 on erase, 1 or more on upgrade.
if [ "$1" -eq 0 ]; then
  virt_l3_remove_tables_by_name
  virt_l3_drop_hook
  virt_l3_reload_libvirt
  virt_l3_undefine_nwfilters
  # Records of routed domains (a tmpfs: gone at reboot anyway). rpm itself
  # removes /etc/virt-l3/config.toml, or keeps an edited one as config.toml.rpmsave.
  rm -rf /run/virt-l3
  # The package's own directories (rpm does not own the ones its files create);
  # a directory that still holds something (an .rpmsave) stays.
  for dir in /etc/virt-l3 /usr/share/virt-l3/nwfilter-templates /usr/share/virt-l3/cloudstack /usr/share/virt-l3 \
    /usr/share/doc/virt-l3/examples /usr/share/doc/virt-l3 /usr/share/licenses/virt-l3; do
    rmdir "$dir" 2>/dev/null || true
  done
fi
if virt_l3_systemd; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
