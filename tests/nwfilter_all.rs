//! `virt-l3 nwfilter render --all`: every running domain's filters in one
//! process, the same files as one `render` per domain.
#![allow(clippy::unwrap_used)] // test helpers panic with the failing call

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/domains")
            .join(name),
    )
    .unwrap()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn render_all_writes_what_one_render_per_domain_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let status = tmp.path().join("status");
    std::fs::create_dir_all(&status).unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, format!("libvirt_status_dir = {status:?}\n")).unwrap();
    let xml = fixture("dual-stack.xml");
    let body = format!(
        "<domstatus state='running' reason='booted' pid='1'>\n{}\n</domstatus>\n",
        String::from_utf8_lossy(&xml)
    );
    std::fs::write(status.join("i-2-10-VM.xml"), body).unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        use std::io::Write;
        let mut c = Command::new(env!("CARGO_BIN_EXE_virt-l3"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("VIRT_L3_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let one = tmp.path().join("one");
    let all = tmp.path().join("all");
    run(
        &["nwfilter", "render", "--out-dir", one.to_str().unwrap()],
        &xml,
    );
    let o = run(
        &[
            "nwfilter",
            "render",
            "--all",
            "--out-dir",
            all.to_str().unwrap(),
        ],
        b"",
    );
    let listed = String::from_utf8_lossy(&o.stdout).lines().count();
    let f = files(&all);
    assert!(f.len() > 2, "{f:?}");
    assert_eq!(listed, f.len());
    assert_eq!(f, files(&one));
}
