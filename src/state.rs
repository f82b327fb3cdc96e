//! The state directory: what virt-l3 applied for each domain, and who owns
//! which address. Records are written atomically (temp file + rename) under one
//! lock, because libvirt runs hooks for different domains concurrently.
//!
//! Layout of `state_dir`:
//! - `lock`: flock(2)ed for the length of every change;
//! - `domains/<uuid>.json`: one [`Record`] per domain with routes on this host;
//! - `owners/<address>`: a symlink to `<uuid> <name>` of the domain owning that address
//!   (one atomic `symlinkat(2)` to claim, one `readlinkat(2)` to look up);
//! - `prefixes/<prefix with _ for />`: the same for routed prefixes;
//! - `macs/<mac>`: the same for the MACs of routed NICs (two domains with one MAC
//!   would share one nwfilter and one neighbour entry);
//! - `incoming/<uuid>`: an incoming live migration announced by the `migrate` hook;
//! - `stopping/<uuid>`: a domain whose `stopped` hook ran while libvirt still lists it
//!   (not to be adopted by reconcile until its status file is gone).
//! - `security-groups/<uuid>.json` (or `name=<name>.json`): a domain's security-group
//!   rules (`state/security_groups.rs`, issue 16).
//! - `refused/<uuid>`: why `refresh` refused a change to a running domain (`state/refused.rs`).
//!
//! Looking up an address is one file read, whatever the number of domains.
//!
//! Claims are taken before a record is written and released after it is
//! deleted, so a kill at any point leaves only whole records and claims that
//! block (never free) an address; docs/CONCURRENCY.md has each kill point.
//!
//! The directories are created 0700 and must stay owned by the effective user
//! (root) and not writable by group or others; nothing in them is followed
//! through a symbolic link (`state/dirfd.rs`; docs/CONCURRENCY.md, "The state
//! directory's safety").

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use crate::address::Mac;
use crate::plan::{is_valid_uuid, DomainPlan, Owner};

mod access;
mod bulk;
mod dirfd;
mod ownership;
mod refused;
mod security_groups;

use access::Held;
pub use access::StateLock;
pub use ownership::OwnershipView;
pub use refused::Refusal;

use dirfd::{Dir, Kind, LinkText};
pub use security_groups::SgKey;

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
    /// A symbolic link where virt-l3 keeps a directory, record, claim, lock,
    /// marker or temporary file: refused, never followed.
    #[error("{what} {path} is a symbolic link: virt-l3 does not follow symbolic links in its state directory; remove it")]
    Symlink { what: &'static str, path: PathBuf },
    /// A state directory others could write into (or owned by someone else).
    #[error("state directory {path} is mode {mode:04o}, owned by uid {uid}: it must be owned by {must_owner} and not writable by group or others (chmod 0700 {path}; chown {chown_to} {path})", path = .path.display())]
    Unsafe {
        path: PathBuf,
        mode: u32,
        uid: u32,
        must_owner: String,
        chown_to: String,
    },
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
    /// The directories opened while this process holds the lock (see [`Held`]).
    held: Arc<Mutex<Option<Held>>>,
}

/// The subdirectories reconcile's sweep looks into.
const SUBDIRS: [&str; 5] = ["domains", "owners", "prefixes", "macs", "incoming"];

/// The claim directories: one claim (a symlink to `<uuid> <name>`) per name.
const CLAIMS: [&str; 3] = ["owners", "prefixes", "macs"];

/// The subdirectories created (mode 0700) with the state directory.
/// (`macs` came later: a state directory made before it gets it at the first save.)
const CREATED: [&str; 6] = [
    "domains", "owners", "prefixes", "macs", "incoming", "stopping",
];

/// Whether a claim's text is `<uuid> <name>`, as [`StateDir::claim`] writes it.
fn is_owner_text(text: &str) -> bool {
    text.split_once(' ').is_some_and(|(u, _)| is_valid_uuid(u))
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            held: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks the state directory if it exists: owned by the effective user
    /// (root), not writable by group or others, not a symbolic link. Every
    /// operation checks it too; this is for callers that want the refusal early.
    pub fn check(&self) -> Result<(), StateError> {
        self.open_root().map(drop)
    }

    /// Whether the lock file exists: it is created last, after the directories,
    /// and before any record; without it the state directory holds nothing.
    /// (Not following links: a planted link is refused by [`StateDir::lock`].)
    pub fn has_lock_file(&self) -> bool {
        std::fs::symlink_metadata(self.root.join("lock")).is_ok()
    }

    fn record_name(uuid: &str) -> String {
        format!("{uuid}.json")
    }

    /// The record of a domain, if it has one.
    pub fn record(&self, uuid: &str) -> Result<Option<Record>, StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(None);
        }
        match self.open_sub("domains")? {
            Some(dir) => Self::read_record(&dir, uuid),
            None => Ok(None),
        }
    }

    fn read_record(dir: &Dir, uuid: &str) -> Result<Option<Record>, StateError> {
        let name = Self::record_name(uuid);
        let Some(bytes) = dir.read("record", &name)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: dir.path(&name),
                message: e.to_string(),
            })
    }

    /// Every record (for status, reconcile and name lookups; not on the hook's hot path).
    pub fn records(&self) -> Result<Vec<Record>, StateError> {
        let Some(dir) = self.open_sub("domains")? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for name in dir.names()? {
            let Some(uuid) = name.strip_suffix(".json") else {
                continue;
            };
            if !is_valid_uuid(uuid) {
                continue;
            }
            if let Some(r) = Self::read_record(&dir, uuid)? {
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

    /// Writes `name` in `dir` whole or not at all: a temporary file beside it
    /// (one fixed name per target: writers hold the lock), flushed to its disk,
    /// then renamed over it. A kill leaves at most the temporary file, which
    /// nothing reads and [`StateDir::forget`] or reconcile's sweep removes. The
    /// flush costs nothing on the default tmpfs `/run`; on a disk it keeps a
    /// power cut from leaving an empty record behind the rename. Neither the
    /// target nor the temporary file may be a symbolic link.
    fn write_atomic(
        dir: &Dir,
        what: &'static str,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), StateError> {
        dir.refuse_symlink(what, name)?;
        let tmp = temp_name(name);
        let mut f = dir.create_temp(&tmp)?;
        f.write_all(bytes).map_err(|source| StateError::Io {
            what: "write",
            path: dir.path(&tmp),
            source,
        })?;
        f.sync_data().map_err(|source| StateError::Io {
            what: "write",
            path: dir.path(&tmp),
            source,
        })?;
        drop(f);
        dir.rename(&tmp, name)
    }

    fn owner_text(plan: &DomainPlan) -> String {
        format!("{} {}", plan.uuid, plan.name)
    }

    /// Claims an address or prefix for a domain: a symlink whose target is
    /// `<uuid> <name>`. Creating one is a single atomic system call, tried first
    /// (a start claims names nobody holds); an existing claim is left alone when
    /// it already names the domain, and replaced atomically (symlink beside it,
    /// then rename) otherwise. A symbolic link that is not a claim (its target
    /// is not `<uuid> <name>`: a path) is refused.
    fn claim(dir: &Dir, name: &str, owner: &str) -> Result<(), StateError> {
        match dir.symlink(owner, name) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EEXIST) => {
                if let LinkText::Link(t) = dir.read_link(name) {
                    if t.to_str() == Some(owner) {
                        return Ok(());
                    }
                    if !t.to_str().is_some_and(is_owner_text) {
                        return Err(StateError::Symlink {
                            what: "claim",
                            path: dir.path(name),
                        });
                    }
                } else if Self::owner_text_at(dir, name)?.as_deref() == Some(owner) {
                    return Ok(());
                }
                let tmp = format!(".claim-{}", std::process::id());
                let _ = dir.remove(&tmp);
                dir.symlink(owner, &tmp).map_err(|e| StateError::Io {
                    what: "create",
                    path: dir.path(&tmp),
                    source: e.into(),
                })?;
                dir.rename(&tmp, name)
            }
            Err(e) => Err(StateError::Io {
                what: "create",
                path: dir.path(name),
                source: e.into(),
            }),
        }
    }

    /// The `<uuid> <name>` a claim holds (a symlink's target, or a legacy
    /// file's text, read without following a link).
    fn owner_text_at(dir: &Dir, name: &str) -> Result<Option<String>, StateError> {
        match dir.read_link(name) {
            LinkText::Link(target) => Ok(target.into_string().ok()),
            LinkText::NotLink => match dir.read("claim", name) {
                Ok(bytes) => Ok(bytes
                    .and_then(|b| String::from_utf8(b).ok())
                    .map(|t| t.trim_end().to_string())),
                // A link put there since readlink: refused; anything else unreadable.
                Err(e @ StateError::Symlink { .. }) => Err(e),
                Err(_) => Ok(None),
            },
            LinkText::Missing => Ok(None),
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
        let owners = self.need_sub("owners")?;
        let prefixes = self.need_sub("prefixes")?;
        let macs = self.ensure_sub("macs")?;
        // Claims first, record last: a crash in between leaves claims that the
        // next save or release of this domain cleans, never a record without claims.
        for a in record.plan.addresses() {
            Self::claim(&owners, &a.to_string(), &owner)?;
        }
        for p in record.plan.prefixes() {
            Self::claim(&prefixes, &prefix_name(&p), &owner)?;
        }
        for m in record.plan.macs() {
            Self::claim(&macs, &m.to_string(), &owner)?;
        }
        let domains = self.need_sub("domains")?;
        let name = Self::record_name(&record.plan.uuid);
        let json = serde_json::to_vec_pretty(record).map_err(|e| StateError::Corrupt {
            path: domains.path(&name),
            message: e.to_string(),
        })?;
        Self::write_atomic(&domains, "record", &name, &json)?;
        if let Some(prev) = previous {
            for a in prev
                .plan
                .addresses()
                .filter(|a| !record.plan.addresses().any(|b| b == *a))
            {
                Self::release_path(&owners, &a.to_string(), &prev.plan.uuid)?;
            }
            for p in prev
                .plan
                .prefixes()
                .filter(|p| !record.plan.prefixes().any(|q| q == *p))
            {
                Self::release_path(&prefixes, &prefix_name(&p), &prev.plan.uuid)?;
            }
            for m in prev
                .plan
                .macs()
                .filter(|m| !record.plan.macs().any(|n| n == *m))
            {
                Self::release_path(&macs, &m.to_string(), &prev.plan.uuid)?;
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
        let name = Self::record_name(&record.plan.uuid);
        if let Some(domains) = self.open_sub("domains")? {
            domains.remove(&name)?;
            domains.remove(&temp_name(&name))?;
        }
        self.clear_incoming(&record.plan.uuid)?;
        self.clear_refused(&record.plan.uuid)?;
        self.release_claims(
            &record.plan.uuid,
            record.plan.addresses(),
            record.plan.prefixes(),
            record.plan.macs(),
        )
    }

    /// Removes the claims on these addresses, prefixes and MACs that name `uuid`, and
    /// the temporary file of its record: what a start killed before its record
    /// was written leaves (`stopped`/`release` find no record then, and pass the
    /// addresses of the domain XML). Call under the lock.
    pub fn release_claims(
        &self,
        uuid: &str,
        addresses: impl IntoIterator<Item = IpAddr>,
        prefixes: impl IntoIterator<Item = IpNet>,
        macs: impl IntoIterator<Item = Mac>,
    ) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        if let Some(domains) = self.open_sub("domains")? {
            domains.remove(&temp_name(&Self::record_name(uuid)))?;
        }
        if let Some(owners) = self.open_sub("owners")? {
            for a in addresses {
                Self::release_path(&owners, &a.to_string(), uuid)?;
            }
        }
        if let Some(dir) = self.open_sub("prefixes")? {
            for p in prefixes {
                Self::release_path(&dir, &prefix_name(&p), uuid)?;
            }
        }
        if let Some(dir) = self.open_sub("macs")? {
            for m in macs {
                Self::release_path(&dir, &m.to_string(), uuid)?;
            }
        }
        Ok(())
    }

    /// Removes what killed writers left: temporary files, and claims naming a
    /// domain without a record or whose record lacks that address, prefix or MAC.
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
                owned.insert(("prefixes", prefix_name(&p), r.plan.uuid.as_str()));
            }
            for m in r.plan.macs() {
                owned.insert(("macs", m.to_string(), r.plan.uuid.as_str()));
            }
        }
        let mut removed = Vec::new();
        for sub in SUBDIRS {
            let Some(dir) = self.open_sub(sub)? else {
                continue;
            };
            for name in dir.names()? {
                let stale = if name.starts_with('.') {
                    Some(format!("temporary file {sub}/{name}"))
                } else if CLAIMS.contains(&sub) {
                    // A claim that cannot be read (a file linked elsewhere
                    // included) is unreadable: removing it follows nothing.
                    match Self::owner_text_at(&dir, &name).ok().flatten() {
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
                        dir.remove(&name)?;
                    }
                    removed.push(what);
                }
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Removes a claim if (and only if) it names `uuid`.
    fn release_path(dir: &Dir, name: &str, uuid: &str) -> Result<(), StateError> {
        match Self::owner_text_at(dir, name)? {
            Some(text) if text.split_whitespace().next() == Some(uuid) => dir.remove(name),
            _ => Ok(()),
        }
    }

    fn read_owner(dir: &Dir, name: &str) -> Option<Owner> {
        let text = Self::owner_text_at(dir, name).ok()??;
        let (uuid, name) = text.split_once(' ')?;
        Some(Owner {
            uuid: uuid.to_string(),
            name: name.to_string(),
        })
    }

    /// Marks a domain as arriving by live migration (call under the lock).
    pub fn mark_incoming(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        let dir = self.ensure_sub("incoming")?;
        Self::write_atomic(&dir, "marker", uuid, b"")
    }

    /// Whether a domain is marked incoming (a regular file: a link is no mark).
    pub fn is_incoming(&self, uuid: &str) -> bool {
        is_valid_uuid(uuid)
            && matches!(
                self.open_sub("incoming")
                    .ok()
                    .flatten()
                    .map(|d| d.kind(uuid)),
                Some(Ok(Kind::File))
            )
    }

    pub fn clear_incoming(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        match self.open_sub("incoming")? {
            Some(dir) => dir.remove(uuid),
            None => Ok(()),
        }
    }

    /// Marks a domain as stopping: its `stopped` hook ran, libvirt has not yet
    /// removed its status file. Reconcile must not adopt it then (it would put
    /// back what `stopped` just removed). `release` (once the status file is gone),
    /// reconcile (when the status file is gone) or the next `start` clears it.
    pub fn mark_stopping(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        let dir = self.ensure_sub("stopping")?;
        dir.open("marker", uuid, OFlag::O_WRONLY | OFlag::O_CREAT)?;
        Ok(())
    }

    pub fn clear_stopping(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        match self.open_sub("stopping")? {
            Some(dir) => dir.remove(uuid),
            None => Ok(()),
        }
    }

    /// UUIDs marked stopping (for reconcile).
    pub fn stopping(&self) -> Vec<String> {
        self.marks("stopping")
    }

    /// UUIDs marked incoming (for reconcile).
    pub fn incoming(&self) -> Vec<String> {
        self.marks("incoming")
    }

    fn marks(&self, sub: &'static str) -> Vec<String> {
        self.open_sub(sub)
            .ok()
            .flatten()
            .and_then(|d| d.names().ok())
            .map(|names| names.into_iter().filter(|u| is_valid_uuid(u)).collect())
            .unwrap_or_default()
    }
}

/// The temporary file [`StateDir::write_atomic`] writes `name` through.
fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

/// A claim's file name for a routed prefix (`/` is `_`).
fn prefix_name(p: &IpNet) -> String {
    p.to_string().replace('/', "_")
}

#[cfg(test)]
mod tests;
