//! The state directory's ownership and type.

use super::*;

#[test]
fn a_state_directory_others_can_write_stops_the_hook_with_one_line() {
    require_root!();
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new(&["vnet3"]);
    let xml = fixture(DUAL);
    let dir = lab.state_dir();
    std::fs::create_dir(&dir).unwrap();
    let expect = |o: &std::process::Output, mode: &str, uid: u32| {
        assert!(!o.status.success(), "a start must fail");
        assert!(o.stdout.is_empty());
        let err = stderr(o);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        let p = dir.display();
        let sentence = format!(
            "state directory {p} is mode {mode}, owned by uid {uid}: it must be owned by root \
             and not writable by group or others (chmod 0700 {p}; chown root: {p})"
        );
        assert!(err.contains(&sentence), "{err}");
        assert!(err.contains("i-2-10-VM"), "{err}");
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    expect(&lab.hook("i-2-10-VM", "start", "begin", &xml), "0777", 0);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    nix::unistd::chown(&dir, nobody, None).unwrap();
    expect(
        &lab.hook("i-2-10-VM", "start", "begin", &xml),
        "0700",
        65534,
    );
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
    assert!(lab.neighbours().is_empty(), "{:?}", lab.neighbours());
    assert!(lab.state_files().is_empty(), "{:?}", lab.state_files());
    // Fixed as the line says, the same start succeeds.
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let o = lab.hook("i-2-10-VM", "start", "begin", &xml);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.routes(), dual_routes());
    let o = lab.hook("i-2-10-VM", "release", "end", &xml);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_state_directory_that_is_a_link_is_refused_not_followed() {
    require_root!();
    let lab = Lab::new(&["vnet3"]);
    let xml = fixture(DUAL);
    let elsewhere = lab.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, lab.state_dir()).unwrap();
    let o = lab.hook("i-2-10-VM", "start", "begin", &xml);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    let needle = format!(
        "state directory {} is a symbolic link",
        lab.state_dir().display()
    );
    assert!(err.contains(&needle), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(lab.routes().is_empty(), "{:?}", lab.routes());
}
