//! Running the programs `check` asks (libvirtd, virsh, ebtables, birdc, vtysh), with a
//! time limit, and reading their answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs a program with a time limit; `None` when it cannot be started.
pub(super) fn run(program: &Path, args: &[&str]) -> Option<std::process::Output> {
    let program = resolve(program)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let mut out = child.wait_with_output().ok()?;
                out.stderr
                    .extend_from_slice(b"timed out after 10 s (killed)");
                return Some(out);
            }
        }
    }
}

/// A program name is looked up in PATH and the sbin directories (not always in a
/// user's PATH); a path is taken as it is.
fn resolve(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

pub(super) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first non-empty line, trimmed.
pub(super) fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}
/// `a.if_empty(b)`: `b` when `a` is empty.
pub(super) trait IfEmpty {
    fn if_empty(self, other: String) -> String;
}
impl IfEmpty for String {
    fn if_empty(self, other: String) -> String {
        if self.is_empty() {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_non_empty_line() {
        assert_eq!(
            first_line(b"\n  \n ebtables 1.8.9 \nmore\n"),
            "ebtables 1.8.9"
        );
        assert_eq!(first_line(b""), "");
        assert_eq!(String::new().if_empty("b".into()), "b");
        assert_eq!("a".to_string().if_empty("b".into()), "a");
    }

    #[test]
    fn programs() {
        assert!(resolve(Path::new("sh")).is_some());
        assert!(resolve(Path::new("/nonexistent/program")).is_none());
        assert!(run(Path::new("virt-l3-no-such-program"), &[]).is_none());
        let out = run(Path::new("sh"), &["-c", "echo hi; exit 3"]).unwrap();
        assert_eq!(first_line(&out.stdout), "hi");
        assert!(!out.status.success());
    }
}
