//! libvirt's items: `libvirt` (a version that runs the hooks in qemu.d/), `hook`
//! (virt-l3 installed as the qemu hook), `nwfilter` (the driver answers) and `ebtables`.

use std::path::{Path, PathBuf};

use super::run::{first_line, is_executable, run, IfEmpty};
use super::{fail, ok, CheckOptions, Item};

/// Fix of `libvirt` when no daemon is found.
const INSTALL_LIBVIRT: &str = "apt-get install libvirt-daemon-system (Debian, Ubuntu) or dnf install libvirt-daemon-driver-qemu (EL).";
/// Fix of `libvirt` older than 6.5.
const UPGRADE_LIBVIRT: &str = "Upgrade libvirt to 6.5 or later (Debian 11 has 7.0, Debian 12 9.0). Where that is impossible and nothing else owns it: ln -s /usr/bin/virt-l3 /etc/libvirt/hooks/qemu (cloudstack-agent overwrites that file on upgrade).";
/// Fix of `libvirt` when its version cannot be read.
const CHECK_LIBVIRT_VERSION: &str =
    "Check the libvirt installation: libvirtd --version must print its version.";
/// Fix of `nwfilter` without virsh.
const INSTALL_VIRSH: &str =
    "apt-get install libvirt-clients (Debian) or dnf install libvirt-client (EL).";
/// Fix of `nwfilter` when the driver does not answer.
const START_NWFILTER: &str = "Start libvirt (systemctl enable --now libvirtd); with modular daemons also the nwfilter driver (systemctl enable --now virtnwfilterd.socket; EL: dnf install libvirt-daemon-driver-nwfilter).";
/// Fix of `ebtables` when it fails.
const REINSTALL_EBTABLES: &str = "Reinstall ebtables (apt-get install --reinstall ebtables).";
/// Fix of `ebtables` when it is missing.
const INSTALL_EBTABLES: &str =
    "apt-get install ebtables (Debian) or dnf install ebtables-nft (EL), then restart libvirtd.";

/// `libvirtd (libvirt) 9.0.0` → (9, 0, 0).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    text.split_whitespace().rev().find_map(|w| {
        let mut it = w.split('.').map(|p| p.parse::<u32>());
        let major = it.next()?.ok()?;
        let minor = it.next()?.ok()?;
        let micro = it.next().and_then(Result::ok).unwrap_or(0);
        Some((major, minor, micro))
    })
}

pub(super) fn libvirt_version(opts: &CheckOptions) -> Item {
    let candidates: Vec<PathBuf> = match &opts.libvirtd {
        Some(p) => vec![p.clone()],
        None => vec!["libvirtd".into(), "virtqemud".into()],
    };
    let found = candidates
        .iter()
        .find_map(|p| run(p, &["--version"]).map(|o| (p, o)));
    let Some((program, out)) = found else {
        return fail(
            "libvirt",
            None,
            format!(
                "No libvirt daemon found ({}).",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            INSTALL_LIBVIRT.to_string(),
        );
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match parse_version(&text) {
        Some(v) if v >= (6, 5, 0) => ok(
            "libvirt",
            None,
            format!(
                "libvirt {}.{}.{} ({}) runs the hooks in qemu.d/ (6.5 and later).",
                v.0,
                v.1,
                v.2,
                program.display()
            ),
        ),
        Some(v) => fail(
            "libvirt",
            None,
            format!(
                "libvirt {}.{}.{} is older than 6.5: it does not run hooks in qemu.d/, so virt-l3's hook never runs.",
                v.0, v.1, v.2
            ),
            UPGRADE_LIBVIRT.to_string(),
        ),
        None => fail(
            "libvirt",
            None,
            format!(
                "Cannot read libvirt's version from `{} --version` ({}).",
                program.display(),
                first_line(&out.stdout).if_empty(first_line(&out.stderr))
            ),
            CHECK_LIBVIRT_VERSION.to_string(),
        ),
    }
}

/// Whether `p` is virt-l3: the running binary itself, or a file named virt-l3.
fn is_virt_l3(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::canonicalize(p) else {
        return false;
    };
    if target.file_name().is_some_and(|n| n == "virt-l3") {
        return true;
    }
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    std::env::current_exe().is_ok_and(|exe| same(&exe, &target))
}

pub(super) fn hook_installed(opts: &CheckOptions) -> Item {
    let entry = opts.libvirt_hooks_dir.join("qemu.d/virt-l3");
    let qemu = opts.libvirt_hooks_dir.join("qemu");
    let install = format!(
        "ln -sfn /usr/bin/virt-l3 {} (or `hooks/install.sh`), then make libvirt rescan its hooks: systemctl reload libvirtd (SIGHUP)",
        entry.display()
    );
    for p in [&entry, &qemu] {
        if is_virt_l3(p) && is_executable(p) {
            return ok(
                "hook",
                None,
                format!("The hook {} is virt-l3 and executable.", p.display()),
            );
        }
    }
    if std::fs::symlink_metadata(&entry).is_ok() {
        let why = if std::fs::metadata(&entry).is_err() {
            "is a dangling symbolic link".to_string()
        } else if !is_executable(&entry) {
            "is not executable: libvirt skips it".to_string()
        } else {
            "is not virt-l3".to_string()
        };
        return fail(
            "hook",
            None,
            format!("The hook entry {} {why}.", entry.display()),
            install,
        );
    }
    fail(
        "hook",
        None,
        format!(
            "virt-l3 is not installed as libvirt's qemu hook (neither {} nor {} is virt-l3): VMs start without routes.",
            entry.display(),
            qemu.display()
        ),
        install,
    )
}

pub(super) fn nwfilter(opts: &CheckOptions) -> Item {
    let mut args = Vec::new();
    if let Some(c) = &opts.connect {
        args.extend(["-c", c.as_str()]);
    }
    args.push("nwfilter-list");
    let Some(out) = run(&opts.virsh, &args) else {
        return fail(
            "nwfilter",
            None,
            format!(
                "{} is not installed: cannot ask libvirt for its nwfilter driver.",
                opts.virsh.display()
            ),
            INSTALL_VIRSH.to_string(),
        );
    };
    if out.status.success() {
        return ok(
            "nwfilter",
            None,
            "libvirt's nwfilter driver answers (virsh nwfilter-list).".to_string(),
        );
    }
    fail(
        "nwfilter",
        None,
        format!(
            "`virsh nwfilter-list` failed: {}. Without the nwfilter driver libvirt cannot attach virt-l3's filters and the hook refuses VMs (require_nwfilter).",
            first_line(&out.stderr).if_empty(first_line(&out.stdout))
        ),
        START_NWFILTER.to_string(),
    )
}

pub(super) fn ebtables(opts: &CheckOptions) -> Item {
    match run(&opts.ebtables, &["--version"]) {
        Some(o) if o.status.success() => ok(
            "ebtables",
            None,
            format!("ebtables is available ({}).", first_line(&o.stdout)),
        ),
        Some(o) => fail(
            "ebtables",
            None,
            format!("`ebtables --version` failed: {}.", first_line(&o.stderr)),
            REINSTALL_EBTABLES.to_string(),
        ),
        None => fail(
            "ebtables",
            None,
            format!(
                "{} is not installed: libvirt's nwfilter needs it for the MAC and address rules.",
                opts.ebtables.display()
            ),
            INSTALL_EBTABLES.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("libvirtd (libvirt) 9.0.0"), Some((9, 0, 0)));
        assert_eq!(
            parse_version("virtqemud (libvirt) 6.5.0\n"),
            Some((6, 5, 0))
        );
        assert!(parse_version("libvirtd (libvirt) 6.4.0").unwrap() < (6, 5, 0));
        assert_eq!(parse_version("nothing"), None);
    }
}
