//! The state directory: what virt-l3 applied for each domain, and who owns
//! which address. Records are written atomically (temp file + rename) under one
//! lock, because libvirt runs hooks for different domains concurrently.
//!
//! Layout of `state_dir`:
//! - `lock`: flock(2)ed for the length of every change;
//! - `domains/<uuid>.json`: one [`Record`] per domain with routes on this host;
//! - `owners/<address>`: a symlink to `<uuid> <name>` of the domain owning that address
//!   (one atomic `symlink(2)` to claim, one `readlink(2)` to look up);
//! - `prefixes/<prefix with _ for />`: the same for routed prefixes;
//! - `incoming/<uuid>`: an incoming live migration announced by the `migrate` hook;
//! - `stopping/<uuid>`: a domain between its `stopped` and `release` hooks (not to be
//!   adopted by reconcile while libvirt still lists it).
//!
//! Looking up an address is one file read, whatever the number of domains.
//!
//! Claims are taken before a record is written and released after it is
//! deleted, so a kill at any point leaves only whole records and claims that
//! block (never free) an address; docs/CONCURRENCY.md has each kill point.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::plan::{is_valid_uuid, DomainPlan, Owner, Ownership};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state record {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What virt-l3 applied for one domain on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub plan: DomainPlan,
    /// The metric the routes were installed with.
    pub metric: u32,
    /// The route protocol number they carry.
    pub protocol: u8,
    /// Installed for an incoming live migration and not yet promoted.
    #[serde(default)]
    pub standby: bool,
    /// When the record's metric last changed or it was written by a hook
    /// (milliseconds since the epoch: the arrived hold is measured against it).
    #[serde(default)]
    pub since_ms: u64,
}

/// Milliseconds since the epoch, for [`Record::since_ms`].
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// Held while the state (and the kernel entries it describes) is being changed.
pub struct StateLock {
    _lock: Flock<File>,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    fn ensure_dirs(&self) -> Result<(), StateError> {
        for sub in ["domains", "owners", "prefixes", "incoming"] {
            let d = self.dir(sub);
            fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        Ok(())
    }

    /// Whether the lock file exists: it is created last, after the directories,
    /// and before any record; without it the state directory holds nothing.
    pub fn has_lock_file(&self) -> bool {
        self.root.join("lock").exists()
    }

    /// Takes the state lock (blocking), creating the directory if needed.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let path = self.root.join("lock");
        // The lock file is created after the directories: when it exists, they do.
        let f = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.ensure_dirs()?;
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(io("open", &path))?
            }
            Err(e) => return Err(io("open", &path)(e)),
        };
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
            what: "lock",
            path: path.clone(),
            source: std::io::Error::from(e),
        })?;
        Ok(StateLock { _lock: lock })
    }

    fn record_path(&self, uuid: &str) -> PathBuf {
        self.dir("domains").join(format!("{uuid}.json"))
    }

    /// The record of a domain, if it has one.
    pub fn record(&self, uuid: &str) -> Result<Option<Record>, StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(None);
        }
        let path = self.record_path(uuid);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Corrupt {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Every record (for status, reconcile and name lookups; not on the hook's hot path).
    pub fn records(&self) -> Result<Vec<Record>, StateError> {
        let dir = self.dir("domains");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("list", &dir))?;
            let name = entry.file_name();
            let Some(uuid) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(r) = self.record(uuid)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| {
            a.plan
                .name
                .cmp(&b.plan.name)
                .then(a.plan.uuid.cmp(&b.plan.uuid))
        });
        Ok(out)
    }

    /// Finds a record by domain name (when the XML carried no usable UUID).
    pub fn record_by_name(&self, name: &str) -> Result<Option<Record>, StateError> {
        Ok(self.records()?.into_iter().find(|r| r.plan.name == name))
    }

    /// Writes `path` whole or not at all: a temporary file beside it (one fixed
    /// name per target: writers hold the lock), flushed to its disk, then renamed
    /// over it. A kill leaves at most the temporary file, which nothing reads and
    /// [`StateDir::forget`] or reconcile's sweep removes. The flush costs nothing
    /// on the default tmpfs `/run`; on a disk it keeps a power cut from leaving an
    /// empty record behind the rename.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StateError> {
        let tmp = temp_path(path);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_data().map_err(io("write", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io("replace", path))
    }

    fn owner_text(plan: &DomainPlan) -> String {
        format!("{} {}", plan.uuid, plan.name)
    }

    /// Claims an address or prefix for a domain: a symlink whose target is
    /// `<uuid> <name>`. Creating one is a single atomic system call; an existing
    /// claim is left alone when it already names the domain, and replaced
    /// atomically (symlink beside it, then rename) otherwise.
    fn claim(&self, path: &Path, owner: &str) -> Result<(), StateError> {
        if Self::owner_text_at(path).as_deref() == Some(owner) {
            return Ok(());
        }
        match std::os::unix::fs::symlink(owner, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let dir = path.parent().unwrap_or(&self.root);
                let tmp = dir.join(format!(".claim-{}", std::process::id()));
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(owner, &tmp).map_err(io("create", &tmp))?;
                fs::rename(&tmp, path).map_err(io("replace", path))
            }
            Err(e) => Err(io("create", path)(e)),
        }
    }

    /// The `<uuid> <name>` a claim holds (a symlink's target, or a file's text).
    fn owner_text_at(path: &Path) -> Option<String> {
        match fs::read_link(path) {
            Ok(target) => target.into_os_string().into_string().ok(),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => fs::read_to_string(path)
                .ok()
                .map(|t| t.trim_end().to_string()),
            Err(_) => None,
        }
    }

    /// Writes a domain's record and claims its addresses and prefixes, releasing
    /// those a previous record held that this one no longer has. Call under the lock.
    pub fn save(&self, record: &Record) -> Result<(), StateError> {
        let previous = self.record(&record.plan.uuid)?;
        self.save_over(record, previous.as_ref())
    }

    /// [`StateDir::save`] when the caller already read the previous record.
    pub fn save_over(&self, record: &Record, previous: Option<&Record>) -> Result<(), StateError> {
        let owner = Self::owner_text(&record.plan);
        // Claims first, record last: a crash in between leaves claims that the
        // next save or release of this domain cleans, never a record without claims.
        for a in record.plan.addresses() {
            self.claim(&self.address_path(a), &owner)?;
        }
        for p in record.plan.prefixes() {
            self.claim(&self.prefix_path(&p), &owner)?;
        }
        let json = serde_json::to_vec_pretty(record).map_err(|e| StateError::Corrupt {
            path: self.record_path(&record.plan.uuid),
            message: e.to_string(),
        })?;
        self.write_atomic(&self.record_path(&record.plan.uuid), &json)?;
        if let Some(prev) = previous {
            for a in prev
                .plan
                .addresses()
                .filter(|a| !record.plan.addresses().any(|b| b == *a))
            {
                self.release_path(&self.address_path(a), &prev.plan.uuid)?;
            }
            for p in prev
                .plan
                .prefixes()
                .filter(|p| !record.plan.prefixes().any(|q| q == *p))
            {
                self.release_path(&self.prefix_path(&p), &prev.plan.uuid)?;
            }
        }
        Ok(())
    }

    /// Deletes a domain's record and its claims. Call under the lock.
    ///
    /// The record goes first and the claims last (the reverse of
    /// [`StateDir::save_over`]): a kill in between leaves claims without a
    /// record, which block the addresses (safe) until this domain's next
    /// `stopped`/`release` ([`StateDir::release_claims`]) or reconcile's sweep
    /// removes them; never a record whose addresses another domain could claim.
    pub fn forget(&self, record: &Record) -> Result<(), StateError> {
        let path = self.record_path(&record.plan.uuid);
        remove_if_exists(&path)?;
        remove_if_exists(&temp_path(&path))?;
        self.clear_incoming(&record.plan.uuid)?;
        self.release_claims(
            &record.plan.uuid,
            record.plan.addresses(),
            record.plan.prefixes(),
        )
    }

    /// Removes the claims on these addresses and prefixes that name `uuid`, and
    /// the temporary file of its record: what a start killed before its record
    /// was written leaves (`stopped`/`release` find no record then, and pass the
    /// addresses of the domain XML). Call under the lock.
    pub fn release_claims(
        &self,
        uuid: &str,
        addresses: impl IntoIterator<Item = IpAddr>,
        prefixes: impl IntoIterator<Item = IpNet>,
    ) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        remove_if_exists(&temp_path(&self.record_path(uuid)))?;
        for a in addresses {
            self.release_path(&self.address_path(a), uuid)?;
        }
        for p in prefixes {
            self.release_path(&self.prefix_path(&p), uuid)?;
        }
        Ok(())
    }

    /// Removes what killed writers left: temporary files, and claims naming a
    /// domain without a record or whose record lacks that address or prefix.
    /// Every writer holds the lock, so under it such files are leftovers. Call
    /// under the lock with every record; returns what was (or, with `apply`
    /// false, would be) removed. For reconcile, not the hook's hot path.
    pub fn sweep(&self, records: &[Record], apply: bool) -> Result<Vec<String>, StateError> {
        let mut owned: std::collections::HashSet<(&'static str, String, &str)> =
            std::collections::HashSet::new();
        for r in records {
            for a in r.plan.addresses() {
                owned.insert(("owners", a.to_string(), r.plan.uuid.as_str()));
            }
            for p in r.plan.prefixes() {
                owned.insert((
                    "prefixes",
                    p.to_string().replace('/', "_"),
                    r.plan.uuid.as_str(),
                ));
            }
        }
        let mut removed = Vec::new();
        for sub in ["domains", "owners", "prefixes", "incoming"] {
            let dir = self.dir(sub);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io("list", &dir)(e)),
            };
            for e in entries {
                let e = e.map_err(io("list", &dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let stale = if name.starts_with('.') {
                    Some(format!("temporary file {sub}/{name}"))
                } else if sub == "owners" || sub == "prefixes" {
                    match Self::owner_text_at(&e.path()) {
                        Some(text) => {
                            let uuid = text.split_whitespace().next().unwrap_or_default();
                            (!owned.contains(&(sub, name.clone(), uuid)))
                                .then(|| format!("claim {sub}/{name} of {text} (no record has it)"))
                        }
                        None => Some(format!("unreadable claim {sub}/{name}")),
                    }
                } else {
                    None
                };
                if let Some(what) = stale {
                    if apply {
                        remove_if_exists(&e.path())?;
                    }
                    removed.push(what);
                }
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Removes a claim file if (and only if) it names `uuid`.
    fn release_path(&self, path: &Path, uuid: &str) -> Result<(), StateError> {
        match Self::owner_text_at(path) {
            Some(text) if text.split_whitespace().next() == Some(uuid) => remove_if_exists(path),
            _ => Ok(()),
        }
    }

    fn address_path(&self, a: IpAddr) -> PathBuf {
        self.dir("owners").join(a.to_string())
    }

    fn prefix_path(&self, p: &IpNet) -> PathBuf {
        self.dir("prefixes").join(p.to_string().replace('/', "_"))
    }

    fn read_owner(path: &Path) -> Option<Owner> {
        let text = Self::owner_text_at(path)?;
        let (uuid, name) = text.split_once(' ')?;
        Some(Owner {
            uuid: uuid.to_string(),
            name: name.to_string(),
        })
    }

    /// Marks a domain as arriving by live migration.
    pub fn mark_incoming(&self, uuid: &str) -> Result<(), StateError> {
        self.ensure_dirs()?;
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        self.write_atomic(&self.dir("incoming").join(uuid), b"")
    }

    pub fn is_incoming(&self, uuid: &str) -> bool {
        is_valid_uuid(uuid) && self.dir("incoming").join(uuid).exists()
    }

    pub fn clear_incoming(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        remove_if_exists(&self.dir("incoming").join(uuid))
    }

    /// Marks a domain as stopping: its `stopped` hook ran, libvirt has not yet
    /// removed its status file. Reconcile must not adopt it then (it would put
    /// back what `stopped` just removed). `release` or the next `start` clears it.
    pub fn mark_stopping(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        let dir = self.dir("stopping");
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let path = dir.join(uuid);
        File::create(&path).map_err(io("create", &path))?;
        Ok(())
    }

    pub fn clear_stopping(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        remove_if_exists(&self.dir("stopping").join(uuid))
    }

    /// UUIDs marked stopping (for reconcile).
    pub fn stopping(&self) -> Vec<String> {
        fs::read_dir(self.dir("stopping"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|u| is_valid_uuid(u))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// UUIDs marked incoming (for reconcile).
    pub fn incoming(&self) -> Vec<String> {
        fs::read_dir(self.dir("incoming"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|u| is_valid_uuid(u))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The temporary file [`StateDir::write_atomic`] writes `path` through.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

fn remove_if_exists(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", path)(e)),
    }
}

impl Ownership for StateDir {
    fn owner_of_address(&self, address: IpAddr) -> Option<Owner> {
        Self::read_owner(&self.address_path(address))
    }

    fn routed_prefixes(&self) -> Vec<(IpNet, Owner)> {
        let Ok(dir) = fs::read_dir(self.dir("prefixes")) else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let e = e.ok()?;
            let net: IpNet = e.file_name().to_str()?.replace('_', "/").parse().ok()?;
            Some((net, Self::read_owner(&e.path())?))
        })
        .collect()
    }

    fn address_within(&self, prefix: &IpNet) -> Option<(IpAddr, Owner)> {
        // A small prefix (a /28 is typical for IPv4) is cheaper to probe address by
        // address, one failed open(2) each, than the claims directory, which holds
        // every address of every domain on the host (see docs/BENCHMARKS.md).
        if prefix.max_prefix_len() - prefix.prefix_len() <= PROBE_HOST_BITS {
            return prefix_addresses(prefix).find_map(|a| Some((a, self.owner_of_address(a)?)));
        }
        let dir = fs::read_dir(self.dir("owners")).ok()?;
        dir.filter_map(|e| {
            let e = e.ok()?;
            let a: IpAddr = e.file_name().to_str()?.parse().ok()?;
            if prefix.contains(&a) {
                Some((a, Self::read_owner(&e.path())?))
            } else {
                None
            }
        })
        .next()
    }
}

/// Prefixes with at most this many host bits are checked address by address.
const PROBE_HOST_BITS: u8 = 8;

/// Every address of a prefix, network and broadcast addresses included.
fn prefix_addresses(prefix: &IpNet) -> Box<dyn Iterator<Item = IpAddr>> {
    match prefix {
        IpNet::V4(p) => {
            Box::new(ipnet::Ipv4AddrRange::new(p.network(), p.broadcast()).map(IpAddr::V4))
        }
        IpNet::V6(p) => {
            Box::new(ipnet::Ipv6AddrRange::new(p.network(), p.broadcast()).map(IpAddr::V6))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Nic, Ownership};

    fn claim(state: &StateDir, uuid: &str, addresses: &[&str]) {
        let record = Record {
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
        };
        state.save(&record).unwrap();
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
}
