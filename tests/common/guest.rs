//! A guest: a namespace of its own holding the peers of the lab's taps.

use std::process::{Command, Output};
use std::sync::atomic::Ordering;

use super::{run, Lab, COUNTER};

/// A guest: its own network namespace holding the peer of one of the lab's taps,
/// renamed `eth0` and given the NIC's MAC, as QEMU's NIC would be.
pub struct Guest {
    pub ns: String,
}

impl Lab {
    pub fn guest(&self, tap: &str, mac: &str) -> Guest {
        let ns = format!("{}-g{}", self.ns, COUNTER.fetch_add(1, Ordering::SeqCst));
        run(Command::new("ip").args(["netns", "add", &ns]));
        let guest = Guest { ns };
        let peer = format!("{tap}p");
        self.ip(&["link", "set", &peer, "netns", &guest.ns]);
        guest.ip(&["link", "set", &peer, "name", "eth0"]);
        guest.ip(&["link", "set", "eth0", "address", mac]);
        guest.ip(&["link", "set", "lo", "up"]);
        guest.ip(&["link", "set", "eth0", "up"]);
        guest
    }
}

impl Guest {
    pub fn ip(&self, args: &[&str]) -> String {
        let out = run(Command::new("ip").arg("-n").arg(&self.ns).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command inside the guest's namespace (not asserting success).
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.ns))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

impl Guest {
    /// Moves the peer of another of the lab's taps into this guest as `name`, with `mac`.
    pub fn add_nic(&self, lab: &Lab, tap: &str, name: &str, mac: &str) {
        let peer = format!("{tap}p");
        lab.ip(&["link", "set", &peer, "netns", &self.ns]);
        self.ip(&["link", "set", &peer, "name", name]);
        self.ip(&["link", "set", name, "address", mac]);
        self.ip(&["link", "set", name, "up"]);
    }
}
