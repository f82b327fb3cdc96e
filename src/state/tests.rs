//! Unit tests of the state directory.

use super::*;
use crate::plan::{Nic, Ownership};

fn record(uuid: &str, addresses: &[&str]) -> Record {
    Record {
        plan: DomainPlan {
            name: format!("vm-{uuid}"),
            uuid: uuid.to_string(),
            nics: vec![Nic {
                mac: "52:54:00:00:00:01".parse().unwrap(),
                bridge: "cloudbr0".into(),
                tap: None,
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                routed_prefixes: Vec::new(),
                link_local: None,
            }],
        },
        metric: 100,
        protocol: 52,
        standby: false,
        since_ms: 0,
    }
}

fn claim(state: &StateDir, uuid: &str, addresses: &[&str]) {
    state.save(&record(uuid, addresses)).unwrap();
}

#[test]
fn address_within_probes_small_prefixes_and_scans_large_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let _lock = state.lock().unwrap();
    let a = "aaaaaaaa-0000-4000-8000-000000000001";
    let b = "bbbbbbbb-0000-4000-8000-000000000002";
    claim(&state, a, &["192.0.2.16", "2001:db8::1:ff"]);
    claim(&state, b, &["198.51.100.7", "2001:db8:5::9"]);
    let within = |p: &str| {
        state
            .address_within(&p.parse().unwrap())
            .map(|(ip, o)| (ip.to_string(), o.uuid))
    };
    // Probed (few host bits), the network address included.
    assert_eq!(
        within("192.0.2.16/28"),
        Some(("192.0.2.16".into(), a.into()))
    );
    assert_eq!(
        within("198.51.100.0/24"),
        Some(("198.51.100.7".into(), b.into()))
    );
    assert_eq!(
        within("2001:db8::1:0/120"),
        Some(("2001:db8::1:ff".into(), a.into()))
    );
    assert_eq!(within("192.0.2.32/28"), None);
    assert_eq!(within("192.0.2.17/32"), None);
    // Scanned (many host bits).
    assert_eq!(
        within("198.51.0.0/16"),
        Some(("198.51.100.7".into(), b.into()))
    );
    assert_eq!(
        within("2001:db8:5::/64"),
        Some(("2001:db8:5::9".into(), b.into()))
    );
    assert_eq!(within("2001:db8:6::/64"), None);
    assert_eq!(within("203.0.113.0/23"), None);
}

const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";

/// A state directory (`<tmp>/state`, created by taking the lock once) and a
/// file outside it that a planted link points to.
struct Fixture {
    _tmp: tempfile::TempDir,
    state: StateDir,
    victim: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::new(tmp.path().join("state"));
        drop(state.lock().unwrap());
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        Fixture {
            _tmp: tmp,
            state,
            victim,
        }
    }

    /// Plants a link to the victim at `rel` (relative to the state directory).
    fn plant(&self, rel: &str) -> PathBuf {
        let path = self.state.root().join(rel);
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(&self.victim, &path).unwrap();
        path
    }

    /// The victim was neither written, truncated nor replaced.
    fn victim_intact(&self) {
        assert_eq!(fs::read_to_string(&self.victim).unwrap(), "precious\n");
    }
}

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// The error is the one refusing the link at `path`, and says so in one line.
fn assert_refused_link(e: StateError, what: &str, path: &Path) {
    let text = e.to_string();
    match &e {
        StateError::Symlink { what: w, path: p } => {
            assert_eq!((*w, p.as_path()), (what, path), "{text}");
        }
        other => panic!(
            "expected a refused link at {}, got {other:?}",
            path.display()
        ),
    }
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("symbolic link"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[test]
fn created_owner_only_by_the_effective_user() {
    let f = Fixture::new();
    let euid = nix::unistd::geteuid().as_raw();
    let root = f.state.root();
    for rel in ["", "domains", "owners", "prefixes", "incoming", "stopping"] {
        let m = fs::symlink_metadata(root.join(rel)).unwrap();
        assert!(m.is_dir());
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o700, euid), "{rel}");
    }
    let m = fs::symlink_metadata(root.join("lock")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, euid));
    f.state.mark_stopping(A).unwrap();
    let m = fs::symlink_metadata(root.join("stopping")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o700);
    let m = fs::symlink_metadata(root.join("stopping").join(A)).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
}

#[test]
fn a_linked_record_is_refused_not_followed() {
    let f = Fixture::new();
    let path = f.plant(&format!("domains/{A}.json"));
    let _lock = f.state.lock().unwrap();
    assert_refused_link(f.state.record(A).unwrap_err(), "record", &path);
    assert_refused_link(f.state.records().unwrap_err(), "record", &path);
    let e = f.state.save(&record(A, &["192.0.2.1"])).unwrap_err();
    assert_refused_link(e, "record", &path);
    // save_over (the caller read no previous record) refuses before writing anything.
    let e = f
        .state
        .save_over(&record(A, &["192.0.2.1"]), None)
        .unwrap_err();
    assert_refused_link(e, "record", &path);
    assert!(fs::symlink_metadata(&path).unwrap().is_symlink());
    f.victim_intact();
}

#[test]
fn a_linked_temporary_file_is_refused_not_followed() {
    let f = Fixture::new();
    let _lock = f.state.lock().unwrap();
    let path = f.plant(&format!("domains/.{A}.json.tmp"));
    let e = f.state.save(&record(A, &["192.0.2.1"])).unwrap_err();
    assert_refused_link(e, "temporary file", &path);
    f.victim_intact();
    assert_eq!(f.state.record(A).unwrap(), None);
    // A killed writer's leftover (a regular file) is replaced.
    fs::remove_file(&path).unwrap();
    fs::write(&path, "half a rec").unwrap();
    f.state.save(&record(A, &["192.0.2.1"])).unwrap();
    assert!(fs::symlink_metadata(&path).is_err());
    assert_eq!(f.state.record(A).unwrap(), Some(record(A, &["192.0.2.1"])));
    // A link at the temporary name of a marker too.
    let path = f.plant(&format!("incoming/.{A}.tmp"));
    let e = f.state.mark_incoming(A).unwrap_err();
    assert_refused_link(e, "temporary file", &path);
    f.victim_intact();
}

#[test]
fn a_linked_claim_is_refused_not_followed() {
    let f = Fixture::new();
    let _lock = f.state.lock().unwrap();
    // A claim is a link whose target is `<uuid> <name>`; one pointing at a file is not.
    let path = f.plant("owners/192.0.2.1");
    let e = f.state.save(&record(A, &["192.0.2.1"])).unwrap_err();
    assert_refused_link(e, "claim", &path);
    assert_eq!(f.state.owner_of_address("192.0.2.1".parse().unwrap()), None);
    f.victim_intact();
    // Reconcile's sweep removes it (the link itself).
    let swept = f.state.sweep(&[], true).unwrap();
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert!(
        swept[0].starts_with("claim owners/192.0.2.1 of "),
        "{swept:?}"
    );
    assert!(fs::symlink_metadata(&path).is_err());
    f.victim_intact();
    // The claims directory itself replaced by a link.
    let owners = f.state.root().join("owners");
    fs::remove_dir(&owners).unwrap();
    std::os::unix::fs::symlink(f.victim.parent().unwrap(), &owners).unwrap();
    let e = f.state.save(&record(A, &["192.0.2.1"])).unwrap_err();
    assert_refused_link(e, "state directory", &owners);
    assert!(!f.victim.parent().unwrap().join("192.0.2.1").exists());
}

#[test]
fn a_linked_lock_file_is_refused_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, root.join("lock")).unwrap();
    let state = StateDir::new(&root);
    assert!(state.has_lock_file());
    assert_refused_link(state.lock().err().unwrap(), "lock file", &root.join("lock"));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    // A dangling link (to a file that does not exist) is not created through either.
    let absent = tmp.path().join("absent");
    fs::remove_file(root.join("lock")).unwrap();
    std::os::unix::fs::symlink(&absent, root.join("lock")).unwrap();
    assert_refused_link(state.lock().err().unwrap(), "lock file", &root.join("lock"));
    assert!(!absent.exists());
}

#[test]
fn linked_markers_are_refused_not_followed() {
    let f = Fixture::new();
    let _lock = f.state.lock().unwrap();
    f.state.mark_stopping(A).unwrap();
    let path = f.plant(&format!("stopping/{A}"));
    assert_refused_link(f.state.mark_stopping(A).unwrap_err(), "marker", &path);
    f.victim_intact();
    let path = f.plant(&format!("incoming/{A}"));
    assert!(!f.state.is_incoming(A), "a link is no mark");
    assert_refused_link(f.state.mark_incoming(A).unwrap_err(), "marker", &path);
    f.victim_intact();
    // Clearing removes the links themselves.
    f.state.clear_stopping(A).unwrap();
    f.state.clear_incoming(A).unwrap();
    assert!(fs::symlink_metadata(&path).is_err());
    f.victim_intact();
}

#[test]
fn a_linked_state_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    let root = tmp.path().join("state");
    drop(StateDir::new(&real).lock().unwrap());
    std::os::unix::fs::symlink(&real, &root).unwrap();
    let state = StateDir::new(&root);
    assert_refused_link(state.lock().err().unwrap(), "state directory", &root);
    assert_refused_link(state.records().unwrap_err(), "state directory", &root);
}

/// The one line a state directory with a wrong owner or mode gives.
fn assert_unsafe(e: StateError, path: &Path, mode: u32, uid: u32) {
    let text = e.to_string();
    let p = path.display();
    let expected = format!(
        "state directory {p} is mode {mode:04o}, owned by uid {uid}: it must be owned by root and \
         not writable by group or others (chmod 0700 {p}; chown root: {p})"
    );
    assert_eq!(text, expected);
}

#[test]
fn a_state_directory_writable_by_others_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("a_state_directory_writable_by_others_is_refused: skipped: needs root (the expected owner is root; chown)");
        return;
    }
    let f = Fixture::new();
    let root = f.state.root().to_path_buf();
    for mode in [0o777, 0o775, 0o757, 0o1777] {
        fs::set_permissions(&root, fs::Permissions::from_mode(mode)).unwrap();
        assert_unsafe(f.state.lock().err().unwrap(), &root, mode, 0);
        assert_unsafe(f.state.records().unwrap_err(), &root, mode, 0);
        assert_unsafe(f.state.check().unwrap_err(), &root, mode, 0);
    }
    // Readable by others (0755: what earlier versions created under umask 022) is accepted.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    drop(f.state.lock().unwrap());
    f.state.check().unwrap();
    // A subdirectory writable by others is refused too, naming it.
    let owners = root.join("owners");
    fs::set_permissions(&owners, fs::Permissions::from_mode(0o777)).unwrap();
    let _lock = f.state.lock().unwrap();
    let e = f.state.save(&record(A, &["192.0.2.1"])).unwrap_err();
    assert_unsafe(e, &owners, 0o777, 0);
}

#[test]
fn a_state_directory_owned_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("a_state_directory_owned_by_another_user_is_refused: skipped: needs root (the expected owner is root; chown)");
        return;
    }
    assert!(nix::unistd::geteuid().is_root(), "this test runs as root");
    let f = Fixture::new();
    let root = f.state.root().to_path_buf();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(&root, nobody, None).unwrap();
    assert_unsafe(f.state.lock().err().unwrap(), &root, 0o700, 65534);
    assert_unsafe(f.state.record(A).unwrap_err(), &root, 0o700, 65534);
    assert_eq!(f.state.owner_of_address("192.0.2.1".parse().unwrap()), None);
    nix::unistd::chown(&root, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let domains = root.join("domains");
    nix::unistd::chown(&domains, nobody, None).unwrap();
    assert_unsafe(f.state.record(A).unwrap_err(), &domains, 0o700, 65534);
}

#[test]
fn macs_are_claimed_released_and_swept_like_addresses() {
    let f = Fixture::new();
    let _lock = f.state.lock().unwrap();
    let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
    let other: Mac = "52:54:00:00:00:02".parse().unwrap();
    let r = record(A, &["192.0.2.1"]);
    f.state.save(&r).unwrap();
    assert_eq!(f.state.owner_of_mac(mac).map(|o| o.uuid), Some(A.into()));
    // A new MAC in the next record: the old claim is released.
    let mut moved = r.clone();
    moved.plan.nics[0].mac = other;
    f.state.save(&moved).unwrap();
    assert_eq!(f.state.owner_of_mac(mac), None);
    assert_eq!(f.state.owner_of_mac(other).map(|o| o.uuid), Some(A.into()));
    // Forgotten: released.
    f.state.forget(&moved).unwrap();
    assert_eq!(f.state.owner_of_mac(other), None);
    // A start killed before its record: stopped/release pass the XML's MACs.
    f.state.save(&r).unwrap();
    f.state
        .open_sub("domains")
        .unwrap()
        .unwrap()
        .remove(&format!("{A}.json"))
        .unwrap();
    f.state.release_claims(A, [], [], [mac]).unwrap();
    assert_eq!(f.state.owner_of_mac(mac), None);
    // Reconcile's sweep removes a MAC claim no record has.
    f.state.save(&r).unwrap();
    assert_eq!(
        f.state.sweep(std::slice::from_ref(&r), true).unwrap(),
        Vec::<String>::new()
    );
    let swept = f.state.sweep(&[], true).unwrap();
    assert!(
        swept.contains(&format!(
            "claim macs/{mac} of {A} vm-{A} (no record has it)"
        )),
        "{swept:?}"
    );
    assert_eq!(f.state.owner_of_mac(mac), None);
}

#[test]
fn a_state_directory_without_macs_gets_it_at_the_first_save() {
    let f = Fixture::new();
    let _lock = f.state.lock().unwrap();
    fs::remove_dir(f.state.root().join("macs")).unwrap();
    f.state.save(&record(A, &["192.0.2.1"])).unwrap();
    let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
    assert_eq!(f.state.owner_of_mac(mac).map(|o| o.uuid), Some(A.into()));
    let meta = fs::symlink_metadata(f.state.root().join("macs")).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o700
    );
}

#[test]
fn a_linked_mac_claim_is_refused_not_followed() {
    let f = Fixture::new();
    let _lock = f.state.lock().unwrap();
    let path = f.plant("macs/52:54:00:00:00:01");
    let e = f.state.save(&record(A, &["192.0.2.1"])).unwrap_err();
    assert_refused_link(e, "claim", &path);
    f.victim_intact();
}

/// A state directory at `<tmp>/state`, not created yet, so that a test can
/// rename it away and put another in its place.
fn replaceable_state() -> (tempfile::TempDir, PathBuf, StateDir) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let state = StateDir::new(&root);
    (dir, root, state)
}

/// The directories opened under the lock are reused only while it is held and
/// only while their names still lead to them: a state directory replaced after
/// the lock is released is read afresh, and one replaced under the lock too.
#[test]
fn held_directories_do_not_outlive_the_lock_or_a_replacement() {
    let (dir, root, state) = replaceable_state();
    let (a, b) = (A, B);
    {
        let _lock = state.lock().unwrap();
        claim(&state, a, &["192.0.2.1"]);
        assert_eq!(state.records().unwrap().len(), 1);
    }
    // Replaced after the lock: the next reads see the new, empty directory.
    fs::rename(&root, dir.path().join("old")).unwrap();
    assert!(state.records().unwrap().is_empty());
    let _lock = state.lock().unwrap();
    assert!(state.records().unwrap().is_empty());
    assert_eq!(state.owner_of_address("192.0.2.1".parse().unwrap()), None);
    claim(&state, b, &["192.0.2.2"]);
    // Replaced under the lock (`domains` moved away, a new one made): reads follow the name.
    fs::rename(root.join("domains"), dir.path().join("old-domains")).unwrap();
    fs::create_dir(root.join("domains")).unwrap();
    fs::set_permissions(root.join("domains"), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(state.records().unwrap().is_empty());
    assert_eq!(state.record(b).unwrap(), None);
}

/// Under the lock, what is written lands in the tree whose lock file is held:
/// a state directory renamed away and replaced meanwhile does not receive it
/// (the next lock opens the new one).
#[test]
fn writes_under_the_lock_land_in_the_locked_tree() {
    let (dir, root, state) = replaceable_state();
    let (a, b) = (A, B);
    {
        let _lock = state.lock().unwrap();
        claim(&state, a, &["192.0.2.1"]);
        fs::rename(&root, dir.path().join("old")).unwrap();
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        claim(&state, b, &["192.0.2.2"]);
        // A subdirectory first used after the swap: the locked tree's too.
        state.mark_stopping(b).unwrap();
    }
    let old = dir.path().join("old");
    assert!(fs::symlink_metadata(old.join("owners").join("192.0.2.2")).is_ok());
    assert!(old.join("domains").join(format!("{b}.json")).exists());
    assert!(old.join("stopping").join(b).exists());
    assert!(fs::symlink_metadata(root.join("owners").join("192.0.2.2")).is_err());
    assert!(!root.join("stopping").exists());
    // The next lock takes the new directory, empty.
    let _lock = state.lock().unwrap();
    assert!(state.records().unwrap().is_empty());
    assert_eq!(state.owner_of_address("192.0.2.2".parse().unwrap()), None);
}

/// A claim is created when the name is free, kept when it already names the
/// domain, taken over from another owner (planning refused conflicts before),
/// and refused when the name is a link that is no claim; a legacy file claim
/// is read as one.
#[test]
fn claims_are_created_kept_taken_over_and_never_follow_a_foreign_link() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    let _lock = state.lock().unwrap();
    let a = "aaaaaaaa-0000-4000-8000-000000000001";
    let b = "bbbbbbbb-0000-4000-8000-000000000002";
    let owners = dir.path().join("owners");
    let target = |ip: &str| fs::read_link(owners.join(ip)).unwrap();
    let owner = |ip: &str| state.owner_of_address(ip.parse().unwrap()).map(|o| o.uuid);

    claim(&state, a, &["192.0.2.1"]);
    assert_eq!(owner("192.0.2.1").as_deref(), Some(a));
    let first = fs::symlink_metadata(owners.join("192.0.2.1"))
        .unwrap()
        .ino();
    claim(&state, a, &["192.0.2.1"]);
    let again = fs::symlink_metadata(owners.join("192.0.2.1"))
        .unwrap()
        .ino();
    assert_eq!(
        first, again,
        "a claim already naming the domain is left alone"
    );

    claim(&state, b, &["192.0.2.1"]);
    assert_eq!(owner("192.0.2.1").as_deref(), Some(b));
    assert_eq!(
        target("192.0.2.1").to_str(),
        Some(format!("{b} vm-{b}").as_str())
    );

    fs::write(owners.join("192.0.2.2"), format!("{a} vm-{a}\n")).unwrap();
    claim(&state, a, &["192.0.2.2"]);
    assert!(
        fs::symlink_metadata(owners.join("192.0.2.2"))
            .unwrap()
            .is_file(),
        "kept"
    );
    claim(&state, b, &["192.0.2.2"]);
    assert_eq!(owner("192.0.2.2").as_deref(), Some(b));

    std::os::unix::fs::symlink("/etc/passwd", owners.join("192.0.2.3")).unwrap();
    let e = state.save(&record(a, &["192.0.2.3"])).unwrap_err();
    assert_refused_link(e, "claim", &owners.join("192.0.2.3"));
    assert_eq!(target("192.0.2.3").to_str(), Some("/etc/passwd"));
}
