//! `security-groups/`: the security-group rules set for each domain, one file
//! each, written whole (temporary file + rename) and never through a symbolic
//! link. `<uuid>.json` for a domain known by UUID; `name=<name>.json` for rules
//! given by name for a domain this host does not run yet (CloudStack's agent
//! programs a VM's rules by name, before an incoming migration). The content is
//! the caller's (JSON); this module only keeps the files.

use super::{StateDir, StateError};
use crate::plan::is_valid_uuid;

/// The subdirectory.
const SUB: &str = "security-groups";

/// Which file holds a domain's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SgKey {
    Uuid(String),
    Name(String),
}

impl SgKey {
    /// The file name, or `None` for a name that cannot be one (empty, a `/`, a
    /// leading `.`, a control character, longer than 200 bytes).
    fn file(&self) -> Option<String> {
        match self {
            SgKey::Uuid(u) if is_valid_uuid(u) => Some(format!("{u}.json")),
            SgKey::Name(n)
                if !n.is_empty()
                    && n.len() <= 200
                    && !n.starts_with('.')
                    && !n.contains('/')
                    && !n.chars().any(char::is_control) =>
            {
                Some(format!("name={n}.json"))
            }
            _ => None,
        }
    }
}

impl StateDir {
    /// The stored rules of `key`, if any.
    pub fn security_group(&self, key: &SgKey) -> Result<Option<Vec<u8>>, StateError> {
        let Some(file) = key.file() else {
            return Ok(None);
        };
        match self.open_sub(SUB)? {
            Some(dir) => dir.read("security group", &file),
            None => Ok(None),
        }
    }

    /// Stores the rules of `key` (call under the lock).
    pub fn save_security_group(&self, key: &SgKey, bytes: &[u8]) -> Result<(), StateError> {
        let file = key.file().ok_or_else(|| StateError::Corrupt {
            path: self.root.join(SUB),
            message: format!("{key:?} cannot name a file"),
        })?;
        let dir = self.ensure_sub(SUB)?;
        Self::write_atomic(&dir, "security group", &file, bytes)
    }

    /// Removes the stored rules of `key` (absent is fine; call under the lock).
    pub fn forget_security_group(&self, key: &SgKey) -> Result<(), StateError> {
        let Some(file) = key.file() else {
            return Ok(());
        };
        match self.open_sub(SUB)? {
            Some(dir) => dir.remove(&file),
            None => Ok(()),
        }
    }

    /// The UUIDs with stored rules.
    pub fn security_group_uuids(&self) -> Result<Vec<String>, StateError> {
        let Some(dir) = self.open_sub(SUB)? else {
            return Ok(Vec::new());
        };
        Ok(dir
            .names()?
            .into_iter()
            .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
            .filter(|u| is_valid_uuid(u))
            .collect())
    }
}
