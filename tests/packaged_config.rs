//! The commented default configuration shipped by the packages
//! (packaging/config.toml, installed as /etc/virt-l3/config.toml) must document
//! every key with its true default, so that it never drifts from `Config::default()`.
//!
//! Convention in that file: each key appears once as a commented-out setting,
//! `# key = value`, with its default value; a key without a default (an
//! `Option` that is unset) shows an example value instead.

use std::collections::BTreeSet;
use std::path::Path;

use virt_l3::config::Config;

const PACKAGED: &str = include_str!("../packaging/config.toml");

fn is_setting(line: &str) -> bool {
    let Some((key, _)) = line.split_once(" = ") else {
        return false;
    };
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The commented-out settings of the file, as settings.
fn settings() -> Vec<&'static str> {
    PACKAGED
        .lines()
        .filter_map(|line| line.strip_prefix("# ").filter(|rest| is_setting(rest)))
        .collect()
}

/// Every key of the configuration with its default (`null` when unset).
fn defaults() -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(Config::default()).expect("serialize the defaults") {
        serde_json::Value::Object(map) => map,
        other => panic!("the configuration is not a table: {other}"),
    }
}

#[test]
fn packaged_file_as_shipped_means_defaults() {
    let c = Config::from_toml(PACKAGED, Path::new("packaging/config.toml"))
        .expect("the packaged config parses");
    assert_eq!(c, Config::default());
}

#[test]
fn every_key_is_documented_once() {
    let documented: Vec<String> = settings()
        .iter()
        .map(|s| s.split_once(" = ").expect("a setting").0.to_string())
        .collect();
    let unique: BTreeSet<String> = documented.iter().cloned().collect();
    assert_eq!(unique.len(), documented.len(), "a key is documented twice");
    let all: BTreeSet<String> = defaults().keys().cloned().collect();
    assert_eq!(
        unique, all,
        "packaging/config.toml must document exactly the configuration's keys"
    );
}

#[test]
fn documented_values_are_the_defaults() {
    let text = settings().join("\n");
    let parsed = Config::from_toml(&text, Path::new("packaging/config.toml (uncommented)"))
        .expect("the commented-out settings of packaging/config.toml parse");
    let parsed = match serde_json::to_value(parsed).expect("serialize") {
        serde_json::Value::Object(map) => map,
        other => panic!("not a table: {other}"),
    };
    for (key, default) in defaults() {
        if default.is_null() {
            assert!(
                !parsed[&key].is_null(),
                "{key} has no default: its example must be a valid value"
            );
        } else {
            assert_eq!(
                parsed[&key], default,
                "packaging/config.toml documents a wrong default for {key}"
            );
        }
    }
}
