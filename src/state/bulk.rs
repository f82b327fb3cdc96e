//! Saving many records at once (reconcile adopting every running domain after a
//! reboot): the same files as [`StateDir::save`], in the same order per domain
//! (claims, then the record), but each directory flushed once, not once per file.

use std::io::Write;

use super::{prefix_name, temp_name, Record, StateDir, StateError};

impl StateDir {
    /// Writes every record and claims its addresses, prefixes and MACs, as
    /// [`StateDir::save`] does one by one, for records whose plan the directory
    /// does not hold under another form (reconcile's: adopted, or the same plan
    /// with another metric; nothing of a previous record is released). Call
    /// under the lock.
    ///
    /// In order: every claim; every record into its temporary file; one flush
    /// of the file system's data (`syncfs`, where one `fdatasync` per record
    /// would each wait); every temporary file renamed over its record; one
    /// `fsync` per directory. A kill anywhere leaves, per domain, what a killed
    /// `save` leaves: claims without a record (reconcile's sweep removes them,
    /// and the next reconcile adopts the domain again), a temporary file (swept),
    /// or claims and the whole record.
    pub fn save_all(&self, records: &[&Record]) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let owners = self.need_sub("owners")?;
        let prefixes = self.need_sub("prefixes")?;
        let macs = self.ensure_sub("macs")?;
        let domains = self.need_sub("domains")?;
        for r in records {
            let owner = Self::owner_text(&r.plan);
            for a in r.plan.addresses() {
                Self::claim(&owners, &a.to_string(), &owner)?;
            }
            for p in r.plan.prefixes() {
                Self::claim(&prefixes, &prefix_name(&p), &owner)?;
            }
            for m in r.plan.macs() {
                Self::claim(&macs, &m.to_string(), &owner)?;
            }
        }
        let mut written = Vec::with_capacity(records.len());
        for r in records {
            let name = Self::record_name(&r.plan.uuid);
            let json = serde_json::to_vec_pretty(r).map_err(|e| StateError::Corrupt {
                path: domains.path(&name),
                message: e.to_string(),
            })?;
            domains.refuse_symlink("record", &name)?;
            let tmp = temp_name(&name);
            let mut f = domains.create_temp(&tmp)?;
            f.write_all(&json).map_err(|source| StateError::Io {
                what: "write",
                path: domains.path(&tmp),
                source,
            })?;
            written.push((tmp, name));
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
}
