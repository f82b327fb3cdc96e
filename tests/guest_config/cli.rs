//! The command line: both formats to files, and an invalid interface name.

use super::*;

fn cli(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("state_dir = {:?}\n", dir.path().join("state")),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-l3"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn both_formats_go_to_files_equal_to_the_single_format_outputs() {
    let xml = fixture("multi-nic.xml");
    let o = cli(&["guest-config", "--format", "both"], &xml);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--out-dir"), "{}", stderr(&o));
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("cd");
    let o = cli(
        &[
            "guest-config",
            "--format",
            "both",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        &xml,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let netplan = cli(&["guest-config"], &xml);
    let json = cli(&["guest-config", "--format", "network-data"], &xml);
    assert_eq!(
        std::fs::read(dir.join("network-config.yaml")).unwrap(),
        netplan.stdout
    );
    assert_eq!(
        std::fs::read(dir.join("network_data.json")).unwrap(),
        json.stdout
    );
    check_golden(
        "multi-nic.yaml",
        &String::from_utf8(netplan.stdout).unwrap(),
    );
}

#[test]
fn an_invalid_interface_name_is_refused_naming_domain_nic_and_name() {
    let c = Config::default();
    let p = planned("dual-stack.xml", &c);
    let opts = Options {
        set_name_prefix: Some("eth\"0: x".into()),
    };
    let e = guest_config::netplan(&p, &c, &opts)
        .unwrap_err()
        .to_string();
    for want in [
        "i-2-10-VM",
        "52:02:45:76:d2:35",
        "eth\\\"0: x0",
        "--set-name",
    ] {
        assert!(e.contains(want), "{want:?} missing from: {e}");
    }
    let long = Options {
        set_name_prefix: Some("a-very-long-name".into()),
    };
    assert!(guest_config::netplan(&p, &c, &long).is_err());
}
