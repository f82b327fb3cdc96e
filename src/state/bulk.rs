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
    /// under the lock. `chunk` records at a time, calling `written` with each
    /// chunk's index once its records are whole.
    ///
    /// For each chunk, in order: its claims (on a thread of their own when
    /// there are many, which goes on to the next chunk's at once); meanwhile
    /// its records into their temporary files, which nothing reads; one flush
    /// of the file system's data (`syncfs`, where one `fdatasync` per record
    /// would each wait); once the chunk's claims are made, its temporary files
    /// renamed over the records. Then one `fsync` per directory. A kill
    /// anywhere leaves, per domain, what a killed `save` leaves: claims without
    /// a record (reconcile's sweep removes them, and the next reconcile adopts
    /// the domain again), a temporary file (swept), or claims and the whole
    /// record. A failure stops there; that chunk's temporary files are removed.
    pub fn save_all_chunked(
        &self,
        records: &[&Record],
        chunk: usize,
        mut written: impl FnMut(usize),
    ) -> Result<(), StateError> {
        if records.is_empty() {
            return Ok(());
        }
        let owners = self.need_sub("owners")?;
        let prefixes = self.need_sub("prefixes")?;
        let macs = self.ensure_sub("macs")?;
        let domains = self.need_sub("domains")?;
        let claim = |part: &[&Record]| -> Result<(), StateError> {
            for r in part {
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
            Ok(())
        };
        let parts: Vec<&[&Record]> = records.chunks(chunk.max(1)).collect();
        let threaded = records.len() >= THREADED;
        std::thread::scope(|s| -> Result<(), StateError> {
            let (tx, claimed) = std::sync::mpsc::channel();
            if threaded {
                let parts = &parts;
                let claim = &claim;
                s.spawn(move || {
                    for part in parts {
                        let r = claim(part);
                        let failed = r.is_err();
                        // Nobody listening: the writer stopped.
                        if tx.send(r).is_err() || failed {
                            break;
                        }
                    }
                });
            }
            for (k, part) in parts.iter().enumerate() {
                let mut temps = Vec::with_capacity(part.len());
                let done = Self::write_temps(&domains, part, &mut temps).and_then(|()| {
                    if threaded {
                        claimed.recv().unwrap_or_else(|_| {
                            Err(StateError::Io {
                                what: "create",
                                path: owners.path(""),
                                source: std::io::Error::other("the claims stopped"),
                            })
                        })
                    } else {
                        claim(part)
                    }
                });
                let done = done
                    .and_then(|()| domains.sync_file_system())
                    .and_then(|()| {
                        temps
                            .iter()
                            .try_for_each(|(tmp, name)| domains.rename(tmp, name))
                    });
                if let Err(e) = done {
                    for (tmp, _) in &temps {
                        let _ = domains.remove(tmp);
                    }
                    return Err(e);
                }
                written(k);
            }
            Ok(())
        })?;
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

/// Records from which [`StateDir::save_all_chunked`] claims on one thread and
/// writes the records on another (below, starting a thread costs more than it saves).
const THREADED: usize = 64;
