//! Run as libvirt runs it: installed in qemu.d, nothing on stdout.

use super::*;

#[test]
fn runs_as_hook_when_installed_in_qemu_d() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    let hookdir = lab.dir.path().join("hooks/qemu.d");
    std::fs::create_dir_all(&hookdir).unwrap();
    let entry = hookdir.join("virt-l3");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virt-l3"), &entry).unwrap();
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(&entry)
        .args(["v4only", "start", "begin", "-"])
        .env("VIRT_L3_CONFIG", lab.config_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fixture("ipv4-only.xml"))
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert_eq!(lab.routes().len(), 2);
}

/// Runs the binary as libvirt does: `/etc/libvirt/hooks/qemu DOMAIN OP SUBOP -`,
/// no subcommand, the configuration from the environment.
fn hook_as_libvirt(
    lab: &Lab,
    domain: &str,
    op: &str,
    subop: &str,
    xml: &[u8],
) -> std::process::Output {
    use std::io::Write;
    let hookdir = lab.dir.path().join("hooks");
    let entry = hookdir.join("qemu");
    if !entry.exists() {
        std::fs::create_dir_all(&hookdir).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virt-l3"), &entry).unwrap();
    }
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .arg(&entry)
        .args([domain, op, subop, "-"])
        .env("VIRT_L3_CONFIG", lab.config_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hook that fails before reading stdin (a bad configuration) closes it early:
    // libvirt ignores that EPIPE ("child closed stdin early"), and so does this test.
    if let Err(e) = child.stdin.take().unwrap().write_all(xml) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing the hook's stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

#[test]
fn hook_mode_prints_nothing_on_stdout_for_a_refused_and_an_accepted_domain() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    // Refused: one line on stderr, naming virt-l3 (no `virt-l3: ` prefix), exit 1.
    for op in ["prepare", "start"] {
        let o = hook_as_libvirt(
            &lab,
            "badaddr",
            op,
            "begin",
            &fixture("invalid-addresses.xml"),
        );
        assert_eq!(o.status.code(), Some(1), "{op}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{op}: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{op}: {err}");
        assert!(
            err.starts_with("virt-l3 refuses domain badaddr: "),
            "{op}: {err}"
        );
    }
    // Accepted: routed, nothing on stdout (stderr may carry log lines).
    for op in ["prepare", "start", "started", "stopped", "release"] {
        let subop = if op.ends_with('d') { "end" } else { "begin" };
        let o = hook_as_libvirt(&lab, "v4only", op, subop, &fixture("ipv4-only.xml"));
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{op}: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        if op == "started" {
            assert_eq!(lab.routes().len(), 2);
        }
    }
    assert!(lab.routes().is_empty());
    // No configuration: a start is refused, a stop passes; one line on stderr either way.
    lab.write_config("bridgez = [\"x\"]");
    for (op, subop, code) in [("prepare", "begin", 1), ("stopped", "end", 0)] {
        let o = hook_as_libvirt(&lab, "v4only", op, subop, &fixture("ipv4-only.xml"));
        assert_eq!(o.status.code(), Some(code), "{op}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{op}: {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        let err = stderr(&o);
        assert!(
            err.starts_with("virt-l3: ") && err.contains("bridgez"),
            "{op}: {err}"
        );
    }
}
