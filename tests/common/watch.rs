//! `virt-l3 watch` run in a lab's namespace, and polling until the kernel shows what it did.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Lab;

/// A running `virt-l3 watch`, killed and reaped when dropped. The child is public
/// for the tests that signal it themselves.
pub struct Watcher(pub Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Lab {
    /// Starts `virt-l3 watch` inside the namespace with the lab's config, its output
    /// discarded. Returns at once: the caller waits for it to subscribe if it must.
    pub fn watch(&self) -> Watcher {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, env!("CARGO_BIN_EXE_virt-l3")])
            .arg("--config")
            .arg(self.config_path())
            .arg("watch")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn virt-l3 watch");
        Watcher(child)
    }
}

/// Polls until `f` holds, returning how long it took; panics after `limit`.
pub fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if f() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
