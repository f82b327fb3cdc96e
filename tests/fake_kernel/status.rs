//! `status`: the recorded entries looked up, missing and differing ones found.

use super::*;

#[test]
fn status_looks_up_the_recorded_entries_and_dumps_nothing_when_healthy() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    let (entries, reads) = lab.status();
    assert!(entries.iter().all(|(_, p)| *p), "{entries:?}");
    assert_eq!(
        reads,
        ["lookup 6"],
        "one lookup of the 6 entries (the link-local neighbour included), no dump"
    );
}

#[test]
fn status_finds_missing_and_differing_entries_as_a_full_read_does() {
    let lab = Lab::new();
    lab.hook("start").unwrap();
    damage(&lab);
    let (entries, reads) = lab.status();
    let absent: Vec<&str> = entries
        .iter()
        .filter(|(_, p)| !p)
        .map(|(e, _)| e.as_str())
        .collect();
    assert_eq!(absent.len(), 2, "{entries:?}");
    assert!(
        absent.iter().any(|e| e.contains("2.57.57.30")),
        "{absent:?}"
    );
    assert!(
        absent.iter().any(|e| e.starts_with("neighbour")),
        "{absent:?}"
    );
    // A route not answered as itself is confirmed by the filtered dump.
    assert_eq!(reads, ["lookup 6", "routes proto 52"]);
}

#[test]
fn a_route_hidden_behind_a_better_one_is_still_found() {
    // The kernel's lookup answers the lowest metric first: a foreign route of
    // the same destination with a lower metric hides virt-l3's, which is there.
    let lab = Lab::new();
    lab.hook("start").unwrap();
    let i = ifindex(&lab);
    lab.kernel.with(|m| {
        m.routes.push(KernelRoute {
            destination: "2.57.57.30/32".parse().unwrap(),
            ifindex: Some(i),
            gateway: None,
            metric: 5,
            protocol: 186,
            table: 254,
        })
    });
    let (entries, reads) = lab.status();
    assert!(entries.iter().all(|(_, p)| *p), "{entries:?}");
    assert_eq!(reads, ["lookup 6", "routes proto 52"]);
}
