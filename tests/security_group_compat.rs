//! The CloudStack compatibility entry point (hooks/cloudstack/virt-l3-security-group)
//! driven with the argument lists the KVM agent passes to security_group.py
//! (apache/cloudstack, plugins/hypervisors/kvm/src/main/java/com/cloud/hypervisor/kvm/
//! resource/LibvirtComputingResource.java: addNetworkRules, defaultNetworkRules,
//! destroyNetworkRulesForVM, canBridgeFirewall, getRuleLogsForVms) programs the
//! same rules as `virt-l3 security-group set`.

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_virt-l3");
/// What SecurityGroupRulesCmd.stringifyRules() builds for SSH in from everywhere and
/// DNS out, after addNetworkRules' `rules.replace(" ", ";")`.
const RULES: &str =
    "I:tcp;22;22;0.0.0.0/0,::/0,NEXT;I:icmp;8;-1;192.0.2.0/24,NEXT;E:udp;53;53;0.0.0.0/0,NEXT;";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("hooks/cloudstack/virt-l3-security-group")
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"{}\"\n", dir.path().join("state").display()),
    )
    .unwrap();
    (dir, config)
}

fn compat(config: &Path, args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .env("VIRT_L3", BIN)
        .env("VIRT_L3_CONFIG", config)
        .output()
        .unwrap()
}

fn virt_l3(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// addNetworkRules: `add_network_rules --vmname N --vmid ID --vmip IP [--vmip6 IP6]
/// --sig SIG --seq SEQ --vmmac MAC --vif VIF --brname BR --nicsecips IPS [--rules RULES]`.
fn agent_add(vm: &str, rules: Option<&str>) -> Vec<String> {
    let mut a: Vec<String> = [
        "add_network_rules",
        "--vmname",
        vm,
        "--vmid",
        "55",
        "--vmip",
        "100.64.0.10",
        "--vmip6",
        "2001:db8::10",
        "--sig",
        "4c3b1e0d5a7f",
        "--seq",
        "7",
        "--vmmac",
        "1e:00:b4:00:00:05",
        "--vif",
        "vnet11",
        "--brname",
        "cloudbr0",
        "--nicsecips",
        "0;",
    ]
    .map(String::from)
    .to_vec();
    if let Some(r) = rules {
        a.extend(["--rules".to_string(), r.to_string()]);
    }
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn add_network_rules_programs_what_set_programs() {
    let (_d1, c1) = setup();
    let (_d2, c2) = setup();
    ok(compat(&c1, &strs(&agent_add("i-2-55-VM", Some(RULES)))));
    ok(virt_l3(&c2, &["security-group", "set", "i-2-55-VM", RULES]));
    let render = |c: &Path| ok(virt_l3(c, &["security-group", "render", "i-2-55-VM"]));
    assert_eq!(render(&c1), render(&c2));
    let show = |c: &Path| ok(virt_l3(c, &["security-group", "show", "i-2-55-VM"]));
    assert_eq!(show(&c1), show(&c2));
    assert!(show(&c1).contains("Ingress tcp ports 22-22 0.0.0.0/0,::/0"));
}

#[test]
fn the_agent_s_other_calls() {
    let (_d, c) = setup();
    // canBridgeFirewall: must succeed, or the agent turns security groups off.
    ok(compat(
        &c,
        &["can_bridge_firewall", "--privnic", "cloudbr0"],
    ));
    // defaultNetworkRules at VM start (no --check): the default, ingress closed.
    ok(compat(
        &c,
        &[
            "default_network_rules",
            "--vmname",
            "i-2-55-VM",
            "--vmid",
            "55",
            "--vmip",
            "100.64.0.10",
            "--vmip6",
            "2001:db8::10",
            "--vmmac",
            "1e:00:b4:00:00:05",
            "--vif",
            "vnet11",
            "--brname",
            "cloudbr0",
            "--nicsecips",
            "0;",
            "--isFirstNic",
        ],
    ));
    let show = || {
        ok(virt_l3(
            &c,
            &["security-group", "show", "--json", "i-2-55-VM"],
        ))
    };
    assert!(show().contains("\"rules\": \"\""), "{}", show());
    // add_network_rules, then the wrapper's `default_network_rules ... --check`
    // (LibvirtSecurityGroupRulesCommandWrapper) must keep them.
    ok(compat(&c, &strs(&agent_add("i-2-55-VM", Some(RULES)))));
    ok(compat(
        &c,
        &[
            "default_network_rules",
            "--vmname",
            "i-2-55-VM",
            "--vmid",
            "55",
            "--vmip",
            "100.64.0.10",
            "--vmmac",
            "1e:00:b4:00:00:05",
            "--vif",
            "vnet11",
            "--brname",
            "cloudbr0",
            "--nicsecips",
            "0;",
            "--isFirstNic",
            "--check",
        ],
    ));
    assert!(show().contains("I:tcp;22;22"), "{}", show());
    // An empty group: the agent passes no --rules at all.
    ok(compat(&c, &strs(&agent_add("i-2-55-VM", None))));
    assert!(show().contains("\"rules\": \"\""));
    // A malformed string is refused, with one line naming the domain and the rule.
    let bad = compat(
        &c,
        &strs(&agent_add(
            "i-2-55-VM",
            Some("I:tcp;22;99999;0.0.0.0/0,NEXT;"),
        )),
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("i-2-55-VM") && err.contains("99999"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // getRuleLogsForVms, secondary addresses, cleanup: accepted.
    ok(compat(&c, &["get_rule_logs_for_vms"]));
    ok(compat(
        &c,
        &[
            "network_rules_vmSecondaryIp",
            "--vmname",
            "i-2-55-VM",
            "--vmmac",
            "1e:00:b4:00:00:05",
            "--nicsecips",
            "100.64.0.11;",
            "--action=-A",
        ],
    ));
    ok(compat(&c, &["cleanup_rules"]));
    // destroyNetworkRulesForVM at stop: gone.
    ok(compat(
        &c,
        &[
            "destroy_network_rules_for_vm",
            "--vmname",
            "i-2-55-VM",
            "--vif",
            "vnet11",
        ],
    ));
    assert!(show().contains("\"stored\": null"), "{}", show());
    assert!(!compat(&c, &["no_such_command"]).status.success());
}
