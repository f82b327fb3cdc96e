//! The commented default configuration shipped by the packages
//! (packaging/config.toml, installed as /etc/virt-l3/config.toml) must document
//! every key with its true default, so that it never drifts from `Config::default()`.
//!
//! Convention in that file: each key appears once as a commented-out setting,
//! `# key = value`, with its default value; a key without a default (an
//! `Option` that is unset) shows an example value instead. A table (`[firewall]`)
//! is a commented-out header, `# [firewall]`, followed by its keys, after every
//! top-level key; its keys are named `firewall.key` here.

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

fn is_table_header(line: &str) -> bool {
    line.len() > 2
        && line.starts_with('[')
        && line.ends_with(']')
        && line[1..line.len() - 1]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_')
}

/// The commented-out settings and table headers of the file, in order.
fn lines() -> Vec<&'static str> {
    PACKAGED
        .lines()
        .filter_map(|line| {
            line.strip_prefix("# ")
                .filter(|rest| is_setting(rest) || is_table_header(rest))
        })
        .collect()
}

/// The commented-out settings, each key prefixed with its table (`firewall.enabled`).
fn settings() -> Vec<String> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in lines() {
        if is_table_header(line) {
            table = format!("{}.", &line[1..line.len() - 1]);
        } else {
            out.push(format!("{table}{line}"));
        }
    }
    out
}

/// Every key of the configuration with its default (`null` when unset); a
/// table's keys as `table.key`.
fn defaults() -> serde_json::Map<String, serde_json::Value> {
    flatten(serde_json::to_value(Config::default()).expect("serialize the defaults"))
}

fn flatten(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(map) = value else {
        panic!("the configuration is not a table: {value}");
    };
    let mut out = serde_json::Map::new();
    for (key, value) in map {
        match value {
            serde_json::Value::Object(table) => {
                for (k, v) in table {
                    out.insert(format!("{key}.{k}"), v);
                }
            }
            v => {
                out.insert(key, v);
            }
        }
    }
    out
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
    let text = lines().join("\n");
    assert!(
        text.contains("[firewall]\nenabled = true"),
        "the firewall is documented as on by default"
    );
    let parsed = Config::from_toml(&text, Path::new("packaging/config.toml (uncommented)"))
        .expect("the commented-out settings of packaging/config.toml parse");
    let parsed = flatten(serde_json::to_value(parsed).expect("serialize"));
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
