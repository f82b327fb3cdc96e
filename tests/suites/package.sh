#!/usr/bin/env bash
# tests/suites/package.sh: the .deb installs, routes, upgrades, removes and purges
# cleanly next to a running libvirtd; the .rpm carries the same files and scriptlets
# with Enterprise Linux paths.
#
# Isolation: everything happens in a private lab (tests/lib/libvirtd.sh: its own
# mount and network namespace, its own libvirtd). Inside the lab, /usr, /var/lib/dpkg,
# /var/lib/systemd and /var/log are overlays too, so dpkg installs into the lab
# only (man-db's trigger and `man` write to an overlay of /var/cache/man): the
# host's dpkg database, /usr and libvirtd are never touched, and the
# overlays' upper directories show every file the package operations left.
#
# Needs root on Debian 12 with libvirt-daemon-system, qemu-system-x86 and rpm.
# Exits non-zero on the first failed check.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=tests/lib/libvirtd.sh
source tests/lib/libvirtd.sh

LAB=pkg$$
tmp=$(mktemp -d /tmp/virt-l3-package-test.XXXXXX)
HOOK=/etc/libvirt/hooks/qemu.d/virt-l3
DOM=i-2-10-VM
UNITS="virt-l3-reconcile.service virt-l3-watch.service"
TEMPLATES=$(cd nwfilter-templates && ls ./*.xml | sed 's|^\./||; s|\.xml$||')

step() { printf -- '--- %s (%s)\n' "$*" "$(date +%T)"; }
ok() { printf '  ok: %s\n' "$*"; }
fail() {
  printf '  FAIL: %s\n' "$*" >&2
  echo "  libvirtd log (tail):" >&2
  lab_log "$LAB" 20 >&2 || true
  exit 1
}
in_lab() { lab_exec "$LAB" "$@"; }
virsh_lab() { lab_virsh "$LAB" "$@"; }
# check DESCRIPTION COMMAND...: the command must succeed.
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
absent() { ! in_lab test -e "$1" && ! in_lab test -L "$1"; }

cleanup() {
  local rc=$?
  set +e
  if lab__alive "$LAB" 2>/dev/null; then
    # Only the lab's overlays see the package; purge it anyway, so that the lab's
    # libvirtd is told to forget the hook before it goes.
    in_lab dpkg --purge virt-l3 >/dev/null 2>&1
  fi
  lab_stop "$LAB"
  rm -rf "$tmp"
  [ "$rc" = 0 ] && echo "package: all checks passed" || echo "package: FAILED" >&2
  exit "$rc"
}
trap cleanup EXIT

routes() { # the lab's routes of virt-l3's protocol (52, the default)
  in_lab ip -4 route show proto 52
  in_lab ip -6 route show proto 52
}
routes_present() {
  local r
  r=$(routes)
  grep -q '^2\.57\.57\.30 dev cloudbr0' <<<"$r" &&
    grep -q '^2001:678:3a4:100::80 dev cloudbr0' <<<"$r" &&
    grep -q '^2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev cloudbr0' <<<"$r"
}
routes_absent() { [ -z "$(routes)" ]; }
tables() { in_lab nft list tables 2>/dev/null | grep ' virt_l3$'; } # virt-l3's nftables tables
tables_present() { [ "$(tables | wc -l)" = 3 ]; }
tables_absent() { [ -z "$(tables)" ]; }
filter_uuids() { virsh_lab nwfilter-list | awk '$2 ~ /^virt-l3-no-/ { print $2, $1 }' | sort; }

step "build the packages"
scripts/deps.sh package # rpm, for the .rpm checks
scripts/build-release.sh --quiet
export PACKAGE_NO_BUILD=1 # one binary in every package
DIST_DIR=$tmp/v1 scripts/package.sh deb >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "make deb"; }
DIST_DIR=$tmp/rpm scripts/package.sh rpm >>"$tmp/build.log" 2>&1 || { cat "$tmp/build.log" >&2; fail "make rpm"; }
DIST_DIR=$tmp/rpm2 scripts/package.sh rpm --set-metadata 'release = "2"' >>"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; fail "rpm with a higher release"; }
deb1=$(ls "$tmp"/v1/virt-l3_*.deb)
# The upgrade: the same build re-versioned (a copy with a higher version), so that
# the packaged conffile is the same in both even while someone edits packaging/
# (with both changed, dpkg would rightly ask about the edited conffile).
dpkg-deb -R "$deb1" "$tmp/v2.root"
sed -i 's/^Version: .*/Version: 0.1.0+upgrade-1/' "$tmp/v2.root/DEBIAN/control"
mkdir -p "$tmp/v2"
dpkg-deb --root-owner-group -b "$tmp/v2.root" "$tmp/v2/virt-l3_0.1.0+upgrade-1_amd64.deb" >/dev/null
deb2=$(ls "$tmp"/v2/virt-l3_*.deb)
rpmf=$(ls "$tmp"/rpm/virt-l3-*.rpm)
rpm2=$(ls "$tmp"/rpm2/virt-l3-*.rpm)
ok "built $(basename "$deb1"), $(basename "$deb2"), $(basename "$rpmf"), $(basename "$rpm2")"

step "the .deb's metadata"
info=$(dpkg-deb -f "$deb1")
check "depends on libvirt-daemon (>= 6.5), which runs qemu.d/ hooks" grep -q '^Depends:.*libvirt-daemon (>= 6.5)' <<<"$info"
check "depends on nftables (the nft binary installs virt-l3's tables)" grep -q '^Depends:.*nftables' <<<"$info"
dpkg-deb --fsys-tarfile "$deb1" | tar -xO ./usr/bin/virt-l3 >"$tmp/packaged-virt-l3"
check "the packaged binary is statically linked (scripts/build-release.sh: no shared object at exec)" \
  sh -c "readelf -d '$tmp/packaged-virt-l3' >'$tmp/packaged-dynamic' && ! grep -q NEEDED '$tmp/packaged-dynamic'"
prerm=$(dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./prerm)
postrm=$(dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./postrm)
check "prerm removes virt-l3's nftables tables (with the binary)" grep -q '^virt_l3_remove_firewall$' <<<"$prerm"
check "postrm removes what is left of them by name" grep -q '^    virt_l3_remove_tables_by_name$' <<<"$postrm"
check "conffiles: exactly /etc/virt-l3/config.toml" \
  test "$(dpkg-deb --ctrl-tarfile "$deb1" | tar -xO ./conffiles)" = /etc/virt-l3/config.toml
contents=$(dpkg-deb -c "$deb1" | awk '{ print $6 }')
for f in ./usr/bin/virt-l3 ./etc/virt-l3/config.toml ./lib/systemd/system/virt-l3-reconcile.service \
  ./lib/systemd/system/virt-l3-watch.service ./usr/share/man/man1/virt-l3.1.gz \
  ./usr/share/doc/virt-l3/copyright ./usr/share/doc/virt-l3/README.packaging.md \
  ./usr/share/virt-l3/cloudstack/libvirt-vm-xml-transformer.groovy ./usr/share/virt-l3/virt-l3-prepare-domain; do
  grep -qx "$f" <<<"$contents" || fail "the .deb lacks $f"
done
for t in $TEMPLATES; do
  grep -qx "./usr/share/virt-l3/nwfilter-templates/$t.xml" <<<"$contents" || fail "the .deb lacks template $t"
  case "$t" in virt-l3-no-*) ;; *) fail "template $t: the purge scripts find templates by the name virt-l3-no-*" ;; esac
done
ok "binary, config, units, man page, copyright, nwfilter templates"
if [ -d packaging/examples ]; then
  for f in $(cd packaging && find examples -type f); do
    grep -qx "./usr/share/doc/virt-l3/$f" <<<"$contents" || fail "the .deb lacks /usr/share/doc/virt-l3/$f"
  done
  ok "the routing daemon examples in /usr/share/doc/virt-l3/examples/"
else
  echo "  note: packaging/examples/ does not exist yet; no examples to check"
fi
! grep -q 'hooks/qemu' <<<"$contents" || fail "the hook entry must not be a package file (dpkg would keep it as a conffile)"

step "the .rpm: files, scriptlets, dependencies"
rlist=$(rpm -qp --list "$rpmf")
dlist=$(sed -n 's|^\./|/|p' <<<"$contents" | grep -v '/$' |
  sed 's|^/lib/systemd/|/usr/lib/systemd/|; s|^/usr/share/doc/virt-l3/copyright$|/usr/share/licenses/virt-l3/LICENSE|' | sort)
check "the .rpm lists the .deb's files at EL paths (/usr/lib/systemd/system, /usr/share/licenses)" \
  diff <(sort <<<"$rlist") <(echo "$dlist")
check "the only config file: /etc/virt-l3/config.toml" test "$(rpm -qp --configfiles "$rpmf")" = /etc/virt-l3/config.toml
check "config flags: %config(noreplace)" \
  grep -qx '/etc/virt-l3/config.toml cn' <(rpm -qp --queryformat '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpmf")
req=$(rpm -qp --requires "$rpmf")
check "requires libvirt-daemon-driver-qemu >= 6.5.0" grep -qx 'libvirt-daemon-driver-qemu >= 6.5.0' <<<"$req"
check "requires /bin/sh for its scriptlets" grep -qx '/bin/sh' <<<"$req"
check "requires nftables (the nft binary installs virt-l3's tables)" grep -qx 'nftables' <<<"$req"
scripts=$(rpm -qp --scripts "$rpmf")
for s in 'postinstall scriptlet' 'preuninstall scriptlet' 'postuninstall scriptlet'; do
  grep -q "^$s" <<<"$scripts" || fail "the .rpm has no $s"
done
post=$(sed -n '/^postinstall scriptlet/,/^preuninstall scriptlet/p' <<<"$scripts")
preun=$(sed -n '/^preuninstall scriptlet/,/^postuninstall scriptlet/p' <<<"$scripts")
postun=$(sed -n '/^postuninstall scriptlet/,$p' <<<"$scripts")
grep -q '^virt_l3_install_hook$' <<<"$post" && grep -q 'systemctl --no-reload enable \$VIRT_L3_UNITS' <<<"$post" &&
  grep -q '^virt_l3_define_nwfilters$' <<<"$post" || fail "%post: hook, units, nwfilters"
grep -q '^\[ "\$1" -eq 0 \] || exit 0$' <<<"$preun" && grep -q '^virt_l3_drop_hook$' <<<"$preun" &&
  grep -q 'systemctl --no-reload disable \$VIRT_L3_UNITS' <<<"$preun" || fail "%preun: only on erase; units, hook"
grep -q 'rm -rf /run/virt-l3' <<<"$postun" || fail "%postun: state"
grep -q '^virt_l3_remove_firewall$' <<<"$preun" && grep -q '^  virt_l3_remove_tables_by_name$' <<<"$postun" ||
  fail "%preun/%postun: virt-l3's nftables tables removed on erase"
grep -q 'VIRT_L3_HOOK_DIR=/etc/libvirt/hooks/qemu.d' <<<"$post" || fail "scriptlets: hook path"
ok "%post installs the hook, defines nwfilters, enables units; %preun (erase only) stops, disables, drops the hook; %postun clears state"
# The scriptlets also run for real in the lab, with rpm's own arguments (last step).

step "a private libvirtd, and private /usr, dpkg database, systemd state, logs and man cache for dpkg"
lab_start "$LAB"
ldir=$(lab_dir "$LAB")
for d in usr var-lib-dpkg var-lib-systemd var-log var-cache-man; do mkdir -p "$ldir/$d.upper" "$ldir/$d.work"; done
chown man:man "$ldir/var-cache-man.upper" # man-db's trigger writes there as user man
in_lab /bin/sh -e -c "
  mount -t overlay lab-usr -o lowerdir=/usr,upperdir=$ldir/usr.upper,workdir=$ldir/usr.work /usr
  mount -t overlay lab-dpkg -o lowerdir=/var/lib/dpkg,upperdir=$ldir/var-lib-dpkg.upper,workdir=$ldir/var-lib-dpkg.work /var/lib/dpkg
  mkdir -p /var/lib/systemd
  mount -t overlay lab-systemd -o lowerdir=/var/lib/systemd,upperdir=$ldir/var-lib-systemd.upper,workdir=$ldir/var-lib-systemd.work /var/lib/systemd
  mount -t overlay lab-log -o lowerdir=/var/log,upperdir=$ldir/var-log.upper,workdir=$ldir/var-log.work /var/log
  mount --bind $ldir/var-log-libvirt /var/log/libvirt
  mkdir -p /var/cache/man
  mount -t overlay lab-man -o lowerdir=/var/cache/man,upperdir=$ldir/var-cache-man.upper,workdir=$ldir/var-cache-man.work /var/cache/man"
check "libvirtd answers in the lab" virsh_lab version >/dev/null
check "no hook in the lab before installation" test -z "$(in_lab ls -A /etc/libvirt/hooks/qemu.d)"
check "no /etc/libvirt/hooks/qemu in the lab (only the packaged hook can route)" absent /etc/libvirt/hooks/qemu
check "no virt-l3 nwfilter in the lab before installation (the host's are not the lab's)" test -z "$(filter_uuids)"
in_lab ip link add cloudbr0 type bridge
in_lab ip link set cloudbr0 up
sed -e "/<filterref/d" -e "/<target dev=/d" testdata/domains/dual-stack.xml >"$tmp/domain.xml"
virsh_lab define "$tmp/domain.xml" >/dev/null

step "dpkg -i next to the running libvirtd"
in_lab dpkg -i "$deb1" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "dpkg -i"; }
sed 's/^/  | /' "$tmp/install.log"
check "installed: $(in_lab dpkg-query -W -f '${Version}' virt-l3)" test "$(in_lab dpkg-query -W -f '${Status}' virt-l3)" = "install ok installed"
check "hook entry $HOOK -> /usr/bin/virt-l3" test "$(in_lab readlink "$HOOK")" = /usr/bin/virt-l3
check "the postinst told libvirtd to rescan its hooks" grep -q 'sent SIGHUP to libvirtd' "$tmp/install.log"
check "units enabled (deb-systemd-helper links)" in_lab test -L /etc/systemd/system/multi-user.target.wants/virt-l3-watch.service -a \
  -L /etc/systemd/system/multi-user.target.wants/virt-l3-reconcile.service
check "the units pass systemd-analyze verify" in_lab env SYSTEMD_LOG_LEVEL=err systemd-analyze verify \
  /lib/systemd/system/virt-l3-watch.service /lib/systemd/system/virt-l3-reconcile.service
check "the man page renders" in_lab sh -c 'MANPAGER=cat man virt-l3 2>/dev/null | grep "virt-l3-status" >/dev/null'
check "the packaged config loads: virt-l3 status runs with it" in_lab /usr/bin/virt-l3 --config /etc/virt-l3/config.toml status
check "the reconcile unit installs virt-l3's nftables tables at boot" \
  in_lab grep -qx 'ExecStartPre=/usr/bin/virt-l3 firewall install' /lib/systemd/system/virt-l3-reconcile.service
# What the reconcile unit does at boot (no systemd runs in the lab).
check "virt-l3 firewall install (as the reconcile unit runs it)" in_lab /usr/bin/virt-l3 firewall install
check "the tables are in the kernel" tables_present
uuids1=$(filter_uuids)
check "base nwfilters defined from the templates: $(echo $(awk '{print $1}' <<<"$uuids1"))" \
  test "$(awk '{print $1}' <<<"$uuids1")" = "$(sort <<<"$TEMPLATES")"

step "a routed domain starts: the packaged hook installs its routes"
# The fixture carries no nwfilter here (that is the nwfilter suite's business).
printf '\n# package test\nrequire_nwfilter = false\n' | in_lab tee -a /etc/virt-l3/config.toml >/dev/null
# libvirtd rescans its hooks in a thread of its own after SIGHUP.
sleep 1
virsh_lab start "$DOM" >/dev/null || fail "virsh start $DOM"
r=$(routes)
sed 's/^/  | /' <<<"$r"
check "routes of $DOM installed (2.57.57.30/32, 2001:678:3a4:100::80/128, the routed /56)" routes_present
check "a state record in /run/virt-l3" test -n "$(in_lab ls -A /run/virt-l3)"
check "virt-l3 status: healthy" in_lab /usr/bin/virt-l3 status >/dev/null

step "upgrade to a rebuilt package while the domain runs"
in_lab dpkg -i "$deb2" >"$tmp/upgrade.log" 2>&1 || { cat "$tmp/upgrade.log" >&2; fail "dpkg -i (upgrade)"; }
sed 's/^/  | /' "$tmp/upgrade.log"
check "upgraded to $(in_lab dpkg-query -W -f '${Version}' virt-l3)" test "$(in_lab dpkg-query -W -f '${Version}' virt-l3)" = 0.1.0+upgrade-1
check "the edited conffile is kept, silently" in_lab grep -qx 'require_nwfilter = false' /etc/virt-l3/config.toml
check "no .dpkg-dist / .dpkg-old next to it" test -z "$(in_lab find /etc/virt-l3 -name '*.dpkg-*')"
check "hook entry still in place" test "$(in_lab readlink "$HOOK")" = /usr/bin/virt-l3
check "routes untouched by the upgrade" routes_present
check "base nwfilters refreshed under the same UUIDs" test "$(filter_uuids)" = "$uuids1"
grep -q 'redefined the nwfilter' "$tmp/upgrade.log" || fail "the upgrade did not refresh the nwfilters"
virsh_lab destroy "$DOM" >/dev/null
check "the upgraded hook removes the routes when the domain stops" routes_absent
virsh_lab start "$DOM" >/dev/null || fail "virsh start $DOM after the upgrade"
check "the upgraded hook installs the routes again" routes_present
virsh_lab destroy "$DOM" >/dev/null
check "and removes them" routes_absent

step "dpkg -r"
files=$(in_lab dpkg -L virt-l3)
in_lab dpkg -r virt-l3 >"$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; fail "dpkg -r"; }
sed 's/^/  | /' "$tmp/remove.log"
check "hook entry gone" absent "$HOOK"
check "binary gone" absent /usr/bin/virt-l3
check "virt-l3's nftables tables removed by dpkg -r" tables_absent
grep -q "removed virt-l3's nftables tables" "$tmp/remove.log" || fail "the prerm did not say it removed the tables"
check "config kept until purge (conffile)" in_lab test -f /etc/virt-l3/config.toml
virsh_lab start "$DOM" >/dev/null || fail "libvirtd cannot start $DOM after the removal"
check "no hook runs any more: $DOM starts without routes" routes_absent
virsh_lab destroy "$DOM" >/dev/null

step "dpkg --purge"
in_lab dpkg --purge virt-l3 >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "dpkg --purge"; }
sed 's/^/  | /' "$tmp/purge.log"
check "dpkg knows no virt-l3" test -z "$(in_lab dpkg-query -W -f '${Status}' virt-l3 2>/dev/null)"
for p in /etc/virt-l3 /run/virt-l3 "$HOOK" /usr/share/virt-l3 /usr/share/doc/virt-l3; do
  absent "$p" || fail "$p remains"
done
ok "/etc/virt-l3, /run/virt-l3, the hook, /usr/share/virt-l3, /usr/share/doc/virt-l3 gone"
left=
while IFS= read -r f; do
  [ -n "$f" ] || continue
  if in_lab test -d "$f"; then continue; fi # shared directories (/usr/bin, /etc, /lib -> usr/lib)
  absent "$f" || left="$left $f"
done <<<"$files"
[ -z "$left" ] || fail "paths of dpkg -L remain:$left"
ok "none of the $(wc -l <<<"$files") paths of dpkg -L remains"
check "no unit enablement, mask or deb-systemd-helper state left" \
  test -z "$(in_lab find /etc/systemd /var/lib/systemd -name 'virt-l3*' 2>/dev/null)"
check "base nwfilters undefined" test -z "$(filter_uuids)"
leftovers=$(cd "$ldir" && find usr.upper var-lib-systemd.upper etc.upper etc-libvirt \
  -name '*virt-l3*' ! -type c 2>/dev/null || true)
check "nothing named virt-l3 written into the lab's /usr, /etc, /etc/libvirt, /var/lib/systemd" test -z "$leftovers"

step "no libvirtd running: installation and purge still succeed"
lab_libvirtd_stop "$LAB"
in_lab dpkg -i "$deb1" >"$tmp/install2.log" 2>&1 || { cat "$tmp/install2.log" >&2; fail "dpkg -i without libvirtd"; }
sed 's/^/  | /' "$tmp/install2.log"
check "hook entry created" test "$(in_lab readlink "$HOOK")" = /usr/bin/virt-l3
printf 'require_nwfilter = false\n' | in_lab tee -a /etc/virt-l3/config.toml >/dev/null
lab_libvirtd_start "$LAB"
virsh_lab start "$DOM" >/dev/null || fail "virsh start $DOM"
check "a libvirtd started afterwards runs the hook: routes installed" routes_present
virsh_lab destroy "$DOM" >/dev/null
check "and removed" routes_absent
lab_libvirtd_stop "$LAB"
in_lab dpkg --purge virt-l3 >"$tmp/purge2.log" 2>&1 || { cat "$tmp/purge2.log" >&2; fail "dpkg --purge without libvirtd"; }
absent "$HOOK" && absent /etc/virt-l3 && absent /usr/bin/virt-l3 || fail "leftovers after a purge without libvirtd"
ok "purged without libvirtd: hook, binary, config gone"

step "the .rpm's scriptlets for real: rpm -i, -U, -e in the lab (private rpm database)"
lab_libvirtd_start "$LAB"
RPMQ="rpm --dbpath /run/lab-rpmdb"
in_lab $RPMQ --initdb
in_lab $RPMQ -i --nodeps --force-debian "$rpmf" >"$tmp/rpm-i.log" 2>&1 || { cat "$tmp/rpm-i.log" >&2; fail "rpm -i"; }
sed 's/^/  | /' "$tmp/rpm-i.log"
check "rpm -i: hook entry $HOOK -> /usr/bin/virt-l3" test "$(in_lab readlink "$HOOK")" = /usr/bin/virt-l3
check "rpm -i: libvirtd told to rescan its hooks" grep -q 'sent SIGHUP to libvirtd' "$tmp/rpm-i.log"
check "rpm -i: units enabled (systemctl --no-reload enable)" in_lab test -L /etc/systemd/system/multi-user.target.wants/virt-l3-watch.service
check "rpm -i: base nwfilters defined" test "$(filter_uuids | awk '{print $1}')" = "$(sort <<<"$TEMPLATES")"
printf 'require_nwfilter = false\n' | in_lab tee -a /etc/virt-l3/config.toml >/dev/null
sleep 1
virsh_lab start "$DOM" >/dev/null || fail "virsh start $DOM (rpm)"
check "rpm: the hook installs the domain's routes" routes_present
in_lab $RPMQ -U --nodeps --force-debian "$rpm2" >"$tmp/rpm-U.log" 2>&1 || { cat "$tmp/rpm-U.log" >&2; fail "rpm -U"; }
sed 's/^/  | /' "$tmp/rpm-U.log"
check "rpm -U: now $(in_lab $RPMQ -q virt-l3)" test "$(in_lab $RPMQ -q --qf '%{RELEASE}' virt-l3)" = 2
check "rpm -U: the old package's %preun/%postun left the hook alone" test "$(in_lab readlink "$HOOK")" = /usr/bin/virt-l3
check "rpm -U: the edited config is kept" in_lab grep -qx 'require_nwfilter = false' /etc/virt-l3/config.toml
check "rpm -U: routes untouched" routes_present
virsh_lab destroy "$DOM" >/dev/null
check "rpm: the upgraded hook removes the routes" routes_absent
check "rpm: virt-l3 firewall install" in_lab /usr/bin/virt-l3 firewall install
check "rpm: the tables are in the kernel" tables_present
in_lab $RPMQ -e virt-l3 >"$tmp/rpm-e.log" 2>&1 || { cat "$tmp/rpm-e.log" >&2; fail "rpm -e"; }
check "rpm -e: virt-l3's nftables tables removed" tables_absent
sed 's/^/  | /' "$tmp/rpm-e.log"
for p in "$HOOK" /usr/bin/virt-l3 /run/virt-l3 /usr/share/virt-l3 /usr/share/doc/virt-l3 /usr/share/licenses/virt-l3 \
  /usr/lib/systemd/system/virt-l3-watch.service /etc/systemd/system/multi-user.target.wants/virt-l3-watch.service \
  /etc/systemd/system/multi-user.target.wants/virt-l3-reconcile.service; do
  absent "$p" || fail "rpm -e: $p remains"
done
ok "rpm -e: hook, binary, state, units and their enablement, package directories gone"
check "rpm -e: only the edited config remains, as config.toml.rpmsave (rpm's way)" \
  test "$(in_lab ls -A /etc/virt-l3)" = config.toml.rpmsave
check "rpm -e: base nwfilters undefined" test -z "$(filter_uuids)"
