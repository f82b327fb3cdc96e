//! A host of the fake kernel (`virt_l3::kernel::fake`): no root, no network namespace.
//! Each test crate adds its own methods (`impl FakeLab`), its `Lab::new` among them.

use virt_l3::config::Config;
use virt_l3::kernel::fake::FakeKernel;
use virt_l3::reconcile::{reconcile, Report};
use virt_l3::state::StateDir;

/// A host with cloudbr0 (its MAC already pinned, so that changes count from the
/// first entry) and its taps, a state dir and a libvirt status dir.
pub struct FakeLab {
    pub tmp: tempfile::TempDir,
    pub config: Config,
    pub kernel: FakeKernel,
}

impl FakeLab {
    /// The host with `taps` as ports of cloudbr0.
    pub fn with_taps(taps: &[&str]) -> FakeLab {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = Config {
            state_dir: tmp.path().join("state"),
            libvirt_status_dir: tmp.path().join("status"),
            ..Config::default()
        };
        std::fs::create_dir_all(&config.libvirt_status_dir).expect("status dir");
        let kernel = FakeKernel::new();
        kernel.add_bridge("cloudbr0");
        kernel.with(|m| m.links.get_mut("cloudbr0").expect("cloudbr0").mac_pinned = true);
        for tap in taps {
            kernel.add_port(tap);
        }
        FakeLab {
            tmp,
            config,
            kernel,
        }
    }

    /// Writes libvirt's status file `file`.xml of `domain` (its XML) in this run state.
    pub fn write_status(&self, file: &str, domain: &str, state: &str, reason: &str) {
        let text = format!(
            "<domstatus state='{state}' reason='{reason}' pid='4242'>\n{domain}\n</domstatus>\n"
        );
        std::fs::write(
            self.config.libvirt_status_dir.join(format!("{file}.xml")),
            text,
        )
        .expect("write status");
    }

    /// A full reconcile against the fake kernel.
    pub fn reconcile(&self) -> Report {
        let mut kernel = self.kernel.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(reconcile(&mut kernel, &self.config, false))
            .expect("reconcile")
    }

    pub fn state(&self) -> StateDir {
        StateDir::new(&self.config.state_dir)
    }
}
