//! Saving many records at once (reconcile adopting every running domain after a
//! reboot): the same files as [`StateDir::save`], in the same order per domain
//! (claims, then the record), but each directory flushed once, not once per file.

use std::io::Write;

use super::dirfd::Dir;
use super::{prefix_name, temp_name, Record, StateDir, StateError};

impl StateDir {
    /// Writes every record and claims its addresses, prefixes and MACs, as
    /// [`StateDir::save`] does one by one, for records whose plan the directory
    /// does not hold under another form (reconcile's: adopted, or the same plan
    /// with another metric; nothing of a previous record is released). Call
    /// under the lock.
    ///
    /// In order: every claim, and (meanwhile, on another thread when there are
    /// many) every record into its temporary file, which nothing reads; one
    /// flush of the file system's data (`syncfs`, where one `fdatasync` per
    /// record would each wait); every temporary file renamed over its record
    /// (only once every claim is made); one `fsync` per directory. A kill
    /// anywhere leaves, per domain, what a killed `save` leaves: claims without
    /// a record (reconcile's sweep removes them, and the next reconcile adopts
    /// the domain again), a temporary file (swept), or claims and the whole
    /// record. A failed claim leaves no record (its temporary files are removed).
    pub fn save_all(&self, records: &[&Record]) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let owners = self.need_sub("owners")?;
        let prefixes = self.need_sub("prefixes")?;
        let macs = self.ensure_sub("macs")?;
        let domains = self.need_sub("domains")?;
        let claim_all = || -> Result<(), StateError> {
            for r in records {
                let owner = Self::owner_text(&r.plan);
                for a in r.plan.addresses() {
                    Self::claim_new(&owners, &a.to_string(), &owner)?;
                }
                for p in r.plan.prefixes() {
                    Self::claim_new(&prefixes, &prefix_name(&p), &owner)?;
                }
                for m in r.plan.macs() {
                    Self::claim_new(&macs, &m.to_string(), &owner)?;
                }
            }
            Ok(())
        };
        let mut written = Vec::with_capacity(records.len());
        let (claimed, temps) = if records.len() >= THREADED {
            std::thread::scope(|s| {
                let claims = s.spawn(claim_all);
                let temps = Self::write_temps(&domains, records, &mut written);
                let claimed = claims
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e));
                (claimed, temps)
            })
        } else {
            let claimed = claim_all();
            let temps = match claimed {
                Ok(()) => Self::write_temps(&domains, records, &mut written),
                Err(_) => Ok(()),
            };
            (claimed, temps)
        };
        if let Err(e) = claimed.and(temps) {
            for (tmp, _) in &written {
                let _ = domains.remove(tmp);
            }
            return Err(e);
        }
        domains.sync_file_system()?;
        for (tmp, name) in &written {
            domains.rename(tmp, name)?;
        }
        owners.sync()?;
        if records.iter().any(|r| r.plan.prefixes().next().is_some()) {
            prefixes.sync()?;
        }
        if records.iter().any(|r| r.plan.macs().next().is_some()) {
            macs.sync()?;
        }
        domains.sync()
    }

    /// Writes each record into its temporary file in `domains`; `written`
    /// gets (temporary name, record name) of each file made.
    fn write_temps(
        domains: &Dir,
        records: &[&Record],
        written: &mut Vec<(String, String)>,
    ) -> Result<(), StateError> {
        for r in records {
            let name = Self::record_name(&r.plan.uuid);
            let json = serde_json::to_vec_pretty(r).map_err(|e| StateError::Corrupt {
                path: domains.path(&name),
                message: e.to_string(),
            })?;
            domains.refuse_symlink("record", &name)?;
            let tmp = temp_name(&name);
            let mut f = domains.create_temp(&tmp)?;
            written.push((tmp.clone(), name));
            f.write_all(&json).map_err(|source| StateError::Io {
                what: "write",
                path: domains.path(&tmp),
                source,
            })?;
        }
        Ok(())
    }
}

/// Records from which [`StateDir::save_all`] claims on one thread and writes
/// the records on another (below, starting a thread costs more than it saves).
const THREADED: usize = 64;

impl StateDir {
    /// [`StateDir::claim`] for a name that is most likely not claimed yet (a
    /// domain adopted after the sweep): the link is created first, and only
    /// an existing name is read (and kept or replaced as `claim` does).
    fn claim_new(dir: &Dir, name: &str, owner: &str) -> Result<(), StateError> {
        match dir.symlink(owner, name) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EEXIST) => Self::claim(dir, name, owner),
            Err(e) => Err(StateError::Io {
                what: "create",
                path: dir.path(name),
                source: e.into(),
            }),
        }
    }
}
