//! `refused/<uuid>`: a change to a running domain that `refresh` refused (its
//! routes stay as they were), one line naming the reason, for `status`. Written
//! and cleared under the lock; cleared when a later refresh succeeds or the
//! domain's record is forgotten (it stopped).

use super::{StateDir, StateError};
use crate::plan::{is_valid_uuid, printable};

/// A refused change to a running domain, as noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub uuid: String,
    pub name: String,
    pub reason: String,
}

const SUB: &str = "refused";

impl StateDir {
    /// Notes why a change to a running domain was refused; returns whether the
    /// note is new (absent or with another reason), so that a refusal is logged
    /// once, not at every rewrite of the status file. Call under the lock.
    /// The note is `NAME\nREASON`.
    pub fn note_refused(&self, uuid: &str, name: &str, reason: &str) -> Result<bool, StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(false);
        }
        let dir = self.ensure_sub(SUB)?;
        let text = format!("{}\n{}", printable(name), printable(reason));
        let before = dir.read("refusal note", uuid)?;
        if before.as_deref() == Some(text.as_bytes()) {
            return Ok(false);
        }
        Self::write_atomic(&dir, "refusal note", uuid, text.as_bytes())?;
        Ok(true)
    }

    /// Removes a domain's refusal note, if any. Call under the lock.
    pub fn clear_refused(&self, uuid: &str) -> Result<(), StateError> {
        if !is_valid_uuid(uuid) {
            return Ok(());
        }
        match self.open_sub(SUB)? {
            Some(dir) => dir.remove(uuid),
            None => Ok(()),
        }
    }

    /// Every pending refusal (for `status`), sorted by UUID.
    pub fn refusals(&self) -> Result<Vec<Refusal>, StateError> {
        let Some(dir) = self.open_sub(SUB)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for uuid in dir.names()?.into_iter().filter(|u| is_valid_uuid(u)) {
            if let Some(b) = dir.read("refusal note", &uuid)? {
                let text = String::from_utf8_lossy(&b);
                let (name, reason) = text.split_once('\n').unwrap_or(("", &text));
                out.push(Refusal {
                    name: name.to_string(),
                    reason: reason.to_string(),
                    uuid,
                });
            }
        }
        out.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        Ok(out)
    }
}
