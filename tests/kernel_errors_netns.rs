//! Kernel errors against the real kernel, one network namespace per test: the
//! routed bridge missing, not a bridge, or down; IPv6 disabled on it (a
//! refusal in the middle of a start); the neighbour table "full"; and netlink
//! permission denied. Each gives a clear error at the right lifecycle step,
//! aborts a start, and leaves nothing applied: no route, no neighbour, no
//! record, no claim. Needs root (as in CI).

#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

#[macro_use]
mod common;
mod snapshot;

use std::process::{Command, Output};

use common::{fixture, stderr, Lab};
use snapshot::{diff, dir_snapshot, kernel_snapshot, settle};

const V4: &str = "ipv4-only.xml";
const V4_NAME: &str = "v4only";
const V4_NIC: &str = "NIC 52:54:00:00:04:01 on cloudbr0";
const DUAL: &str = "dual-stack.xml";
const DUAL_NAME: &str = "i-2-10-VM";

/// The kernel state and the lab directory, to compare before and after.
fn snap(lab: &Lab) -> (String, Vec<String>) {
    (kernel_snapshot(lab), dir_snapshot(lab.dir.path()))
}

fn assert_unchanged(lab: &Lab, before: &(String, Vec<String>), what: &str) {
    let after = snap(lab);
    assert!(
        after.0 == before.0,
        "{what} changed the kernel:\n{}",
        diff(&before.0, &after.0)
    );
    assert!(
        after.1 == before.1,
        "{what} changed the lab directory:\n{}",
        diff(&before.1.join("\n"), &after.1.join("\n"))
    );
}

/// A refusal: non-zero exit, nothing on stdout, exactly `line` on stderr.
fn assert_refused(o: &Output, line: &str, what: &str) {
    assert!(!o.status.success(), "{what} succeeded");
    assert!(o.stdout.is_empty(), "{what} printed on stdout");
    assert_eq!(stderr(o).trim_end(), line, "{what}");
}

/// Nothing of the domain anywhere: routes, neighbours, records, claims.
fn assert_nothing_applied(lab: &Lab) {
    assert!(lab.routes().is_empty(), "routes left: {:?}", lab.routes());
    assert!(
        lab.neighbours().is_empty(),
        "neighbours left: {:?}",
        lab.neighbours()
    );
    assert!(
        lab.state_files().is_empty(),
        "state left: {:?}",
        lab.state_files()
    );
}

/// Every step that aborts a start refuses with `line` and changes nothing;
/// stopped and release then succeed with nothing to do (libvirt runs them
/// after a failed start).
fn refused_at_every_step(lab: &Lab, name: &str, xml: &[u8], line: &str) {
    let before = snap(lab);
    for op in ["migrate", "restore", "prepare", "start", "started"] {
        let o = lab.hook(name, op, "begin", xml);
        assert_refused(&o, line, op);
        assert_unchanged(lab, &before, op);
    }
    for op in ["stopped", "release"] {
        let o = lab.hook(name, op, "end", xml);
        assert!(o.status.success(), "{op}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
        assert_unchanged(lab, &before, op);
    }
}

#[test]
fn a_missing_bridge_is_refused_at_prepare_and_start() {
    require_root!();
    let lab = Lab::new(&[]);
    settle(&lab);
    lab.ip(&["link", "del", "cloudbr0"]);
    refused_at_every_step(
        &lab,
        V4_NAME,
        &fixture(V4),
        &format!(
            "virt-l3 refuses domain {V4_NAME}: {V4_NIC}: bridge cloudbr0 does not exist on this host"
        ),
    );
    assert!(
        !lab.state_dir().exists(),
        "a refused domain created the state directory"
    );
}

#[test]
fn a_routed_bridge_name_on_something_else_is_refused() {
    require_root!();
    let lab = Lab::new(&[]);
    settle(&lab);
    lab.ip(&["link", "del", "cloudbr0"]);
    lab.ip(&[
        "link",
        "add",
        "cloudbr0",
        "type",
        "veth",
        "peer",
        "name",
        "cloudbr0p",
    ]);
    lab.ip(&["link", "set", "cloudbr0", "up"]);
    refused_at_every_step(
        &lab,
        V4_NAME,
        &fixture(V4),
        &format!(
            "virt-l3 refuses domain {V4_NAME}: {V4_NIC}: cloudbr0 exists but is not a Linux bridge"
        ),
    );
}

#[test]
fn a_bridge_that_is_down_is_refused_at_prepare_and_start() {
    require_root!();
    let lab = Lab::new(&[]);
    settle(&lab);
    lab.ip(&["link", "set", "cloudbr0", "down"]);
    // Why prepare checks: on a down device the kernel takes the neighbours but
    // refuses the IPv4 route (ENETDOWN), so a start would half-apply.
    let route = Command::new("ip")
        .args([
            "-n",
            &lab.ns,
            "route",
            "add",
            "192.0.2.99/32",
            "dev",
            "cloudbr0",
        ])
        .output()
        .unwrap();
    assert!(!route.status.success());
    assert!(
        stderr(&route).contains("not up"),
        "the kernel's refusal changed: {}",
        stderr(&route)
    );
    lab.ip(&[
        "neigh",
        "add",
        "192.0.2.99",
        "lladdr",
        "52:54:00:00:00:99",
        "dev",
        "cloudbr0",
        "nud",
        "permanent",
    ]);
    lab.ip(&["neigh", "del", "192.0.2.99", "dev", "cloudbr0"]);

    refused_at_every_step(
        &lab,
        V4_NAME,
        &fixture(V4),
        &format!(
            "virt-l3 refuses domain {V4_NAME}: {V4_NIC}: bridge cloudbr0 is down (ip link set cloudbr0 up)"
        ),
    );
    // Up again: the same domain starts.
    lab.ip(&["link", "set", "cloudbr0", "up"]);
    lab.add_tap("vnet41", "cloudbr0");
    let o = lab.hook(V4_NAME, "start", "begin", &fixture(V4));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.routes().len(), 2);
}

/// IPv6 disabled on the bridge: prepare passes (nothing checks it), the kernel
/// takes the IPv4 entries and refuses the IPv6 ones in the middle of the start,
/// and the start rolls back what went in.
#[test]
fn a_kernel_refusal_in_the_middle_of_a_start_is_rolled_back() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    settle(&lab);
    let sysctl = Command::new("ip")
        .args(["netns", "exec", &lab.ns, "sysctl", "-qw"])
        .arg("net.ipv6.conf.cloudbr0.disable_ipv6=1")
        .status()
        .unwrap();
    assert!(sysctl.success());
    let xml = fixture(DUAL);
    let before = snap(&lab);
    let o = lab.hook(DUAL_NAME, "prepare", "begin", &xml);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lab.hook(DUAL_NAME, "start", "begin", &xml);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    // One more line at most: the warning that the bridge MAC was pinned.
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert!(
        lines.len() == 1 || (lines.len() == 2 && lines[0].contains("MAC pinned")),
        "{err}"
    );
    let head = format!(
        "virt-l3 cannot route domain {DUAL_NAME}: 4 of 6 kernel changes for domain {DUAL_NAME} failed, \
         all rolled back: the kernel refused to add route 2001:678:3a4:100::80/128 dev cloudbr0 metric 100, \
         add route 2001:678:3a4:8000::/56 via 2001:678:3a4:100::80 dev cloudbr0 onlink metric 100: \
         IPv6 is disabled on nexthop device: Permission denied (os error 13)"
    );
    for needle in [
        head.as_str(),
        // With the pinned link-local's neighbour.
        "the kernel refused to add neighbour 2001:678:3a4:100::80 lladdr 52:02:45:76:d2:35 dev cloudbr0 nud permanent, \
         add neighbour fe80::5002:45ff:fe76:d235 lladdr 52:02:45:76:d2:35 dev cloudbr0 nud permanent: \
         IPv6 is disabled on this device: Invalid argument (os error 22)",
    ] {
        assert!(err.contains(needle), "lacks {needle:?}: {err}");
    }
    assert_nothing_applied(&lab);
    // The bridge MAC pin is the one kernel change a failed start keeps (by
    // design: it protects every domain's neighbours); nothing else differs.
    let after = snap(&lab);
    let changed = diff(&before.0, &after.0);
    assert!(
        !changed.is_empty() && changed.lines().all(|l| l.contains("addr_assign_type")),
        "{changed}"
    );
}

/// "Neighbour table full": the kernel's limit (gc_thresh3) is global, set in
/// the initial namespace only (a namespace has no such sysctl), and permanent
/// entries are exempt from it: they never count towards it nor get refused.
/// So a start never meets a full table; this shows it with more permanent
/// entries than the host's gc_thresh3 in one namespace.
#[test]
fn permanent_neighbours_are_not_limited_by_the_neighbour_table_size() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    let in_ns = Command::new("ip")
        .args(["netns", "exec", &lab.ns, "test", "-e"])
        .arg("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .status()
        .unwrap();
    assert!(
        !in_ns.success(),
        "this kernel has a per-namespace gc_thresh3: test a full table with it"
    );
    let thresh: usize = std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        thresh <= 60_000,
        "gc_thresh3 is {thresh}: too many entries to exceed"
    );
    // A bridge whose MAC was never set gets it pinned by the first start, and
    // setting a bridge's MAC (even to the same value) flushes its neighbour
    // table, permanent entries included: pin it first, as a configured host has.
    let json = lab.ip(&["-j", "link", "show", "cloudbr0"]);
    let mac = json
        .split("\"address\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    lab.ip(&["link", "set", "cloudbr0", "address", &mac]);
    let count = thresh + 64;
    let batch: String = (0..count)
        .map(|i| {
            format!(
                "neigh add 10.{}.{}.{} lladdr 52:54:00:ff:00:01 dev cloudbr0 nud permanent\n",
                i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    let path = lab.dir.path().join("neigh.batch");
    std::fs::write(&path, batch).unwrap();
    lab.ip(&["-batch", path.to_str().unwrap()]);
    assert_eq!(lab.neighbours().len(), count);
    let o = lab.hook(V4_NAME, "start", "begin", &fixture(V4));
    assert!(o.status.success(), "{}", stderr(&o));
    let ours: Vec<String> = lab
        .neighbours()
        .into_iter()
        .filter(|n| n.contains("proto 52"))
        .collect();
    assert_eq!(
        ours,
        vec![
            "192.0.2.41 dev cloudbr0 lladdr 52:54:00:00:04:01 PERMANENT proto 52",
            "192.0.2.42 dev cloudbr0 lladdr 52:54:00:00:04:01 PERMANENT proto 52",
        ]
    );
    let o = lab.hook(V4_NAME, "stopped", "end", &fixture(V4));
    assert!(o.status.success());
    assert_eq!(lab.neighbours().len(), count);
}

/// Runs a hook step in the lab through `wrapper` (a command that ends by
/// running its arguments), e.g. without CAP_NET_ADMIN.
fn hook_via(lab: &Lab, wrapper: &[&str], name: &str, op: &str, xml: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns])
        .args(wrapper)
        .arg(env!("CARGO_BIN_EXE_virt-l3"))
        .arg("--config")
        .arg(lab.config_path())
        .args(["hook", name, op, "begin", "-"])
        .env_remove("VIRT_L3_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(xml).unwrap();
    child.wait_with_output().unwrap()
}

/// Without CAP_NET_ADMIN (as under a daemon whose capability bounding set lacks
/// it): refused at prepare already, and at start before anything is recorded.
#[test]
fn without_cap_net_admin_a_start_is_refused_at_prepare() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    settle(&lab);
    let drop = [
        "capsh",
        "--drop=cap_net_admin",
        "--",
        "-c",
        "exec \"$0\" \"$@\"",
    ];
    let line = format!(
        "virt-l3 refuses domain {V4_NAME}: virt-l3 runs without CAP_NET_ADMIN, so it could not install \
         the domain's routes (libvirt runs its hooks as root; check the capabilities the daemon runs with)"
    );
    let before = snap(&lab);
    for op in ["migrate", "prepare", "start", "started"] {
        let o = hook_via(&lab, &drop, V4_NAME, op, &fixture(V4));
        assert_refused(&o, &line, op);
        assert_unchanged(&lab, &before, op);
    }
}

/// Netlink permission denied with every capability in sight: a user namespace
/// has all capabilities, but over its own namespaces only, so the lab's
/// rtnetlink answers EPERM to every change (dumps still work, so prepare
/// passes). The start fails with a sentence naming CAP_NET_ADMIN and leaves
/// no route, neighbour, record or claim.
#[test]
fn netlink_permission_denied_at_start_is_rolled_back() {
    require_root!();
    let lab = Lab::new(&["vnet41"]);
    // The state directory exists (created by a previous domain), as on a host.
    std::fs::create_dir_all(lab.state_dir()).unwrap();
    let userns = ["unshare", "--user", "--map-root-user"];
    let o = hook_via(&lab, &userns, V4_NAME, "prepare", &fixture(V4));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hook_via(&lab, &userns, V4_NAME, "start", &fixture(V4));
    assert!(!o.status.success());
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    let last = err.trim_end().lines().last().unwrap_or_default();
    let expected = format!(
        "virt-l3 cannot route domain {V4_NAME}: 4 of 4 kernel changes for domain {V4_NAME} failed, all rolled back: \
         the kernel refused to add route 192.0.2.41/32 dev cloudbr0 metric 100, add route 192.0.2.42/32 dev cloudbr0 metric 100, \
         add neighbour 192.0.2.41 lladdr 52:54:00:00:04:01 dev cloudbr0 nud permanent, \
         add neighbour 192.0.2.42 lladdr 52:54:00:00:04:01 dev cloudbr0 nud permanent: \
         Operation not permitted (os error 1): virt-l3 needs CAP_NET_ADMIN (libvirt runs its hooks as root)"
    );
    assert_eq!(last, expected);
    assert_nothing_applied(&lab);
    assert!(!lab.isolated("vnet41"));
}

/// Setting a bridge's MAC (here: `gateway_mac` changed between two starts)
/// makes the kernel flush the bridge's neighbour table, permanent entries
/// included; the start that sets it puts the other domains' neighbours back.
#[test]
fn a_bridge_mac_change_does_not_lose_other_domains_neighbours() {
    require_root!();
    let lab = Lab::new(&["vnet41", "vnet61"]);
    let o = lab.hook(V4_NAME, "start", "begin", &fixture(V4));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.neighbours().len(), 2);
    lab.write_config("gateway_mac = \"02:00:00:00:00:01\"");
    let o = lab.hook("v6only", "start", "begin", &fixture("ipv6-only.xml"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lab.neighbours(),
        vec![
            "192.0.2.41 dev cloudbr0 lladdr 52:54:00:00:04:01 PERMANENT proto 52",
            "192.0.2.42 dev cloudbr0 lladdr 52:54:00:00:04:01 PERMANENT proto 52",
            "2001:db8:6::1 dev cloudbr0 lladdr 52:54:00:00:06:01 PERMANENT proto 52",
            "fe80::5054:ff:fe00:601 dev cloudbr0 lladdr 52:54:00:00:06:01 PERMANENT proto 52",
        ]
    );
}
