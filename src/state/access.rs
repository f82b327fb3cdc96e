//! Opening the state directory and its subdirectories, checked every time
//! except under the lock, where what was opened is reused ([`Held`]); and the
//! lock itself.

use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg, OFlag};

use super::dirfd::Dir;
use super::{StateDir, StateError, CREATED};

/// While the lock is held, no other virt-l3 changes the state tree, so the
/// state directory and its subdirectories are opened (and checked) once and
/// their descriptors reused: a hook's start opened the root about twenty times.
/// Each reuse of a subdirectory still checks, with one `fstatat` relative to
/// the root that does not follow links, that the name is the directory that
/// was opened (a directory swapped for a link is then opened again and refused
/// as before). The root itself is the one whose lock file is held: it is kept
/// as opened, not looked up by path again (six path walks of a start), so that
/// what is written under the lock lands in the tree the lock guards. Forgotten
/// when the lock is released; without the lock every access opens and checks
/// again, as a long-running `watch` must.
#[derive(Default)]
pub(super) struct Held {
    root: Option<Dir>,
    subs: Vec<(&'static str, Dir)>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field(
                "subs",
                &self.subs.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Held while the state (and the kernel entries it describes) is being changed.
pub struct StateLock {
    held: Arc<Mutex<Option<Held>>>,
    _lock: Flock<std::fs::File>,
}

impl Drop for StateLock {
    /// Forgets the held directories before the lock itself is released.
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            *held = None;
        }
    }
}

impl StateDir {
    /// Opens the state directory, checked (`None` when it does not exist).
    pub(super) fn open_root(&self) -> Result<Option<Dir>, StateError> {
        if let Some(root) = self.held_dir(None) {
            return Ok(Some(root));
        }
        Dir::open_root(&self.root, false)
    }

    /// Opens a subdirectory, checked (`None` when it or the state directory does not exist).
    pub(super) fn open_sub(&self, sub: &'static str) -> Result<Option<Dir>, StateError> {
        if let Some(dir) = self.held_dir(Some(sub)) {
            return Ok(Some(dir));
        }
        let dir = match self.open_root()? {
            Some(root) => root.sub(sub, false)?,
            None => None,
        };
        if let (Some(dir), Ok(mut held)) = (&dir, self.held.lock()) {
            if let Some(held) = held.as_mut() {
                held.subs.push((sub, dir.clone()));
            }
        }
        Ok(dir)
    }

    /// The root (`None`) or a subdirectory already opened under the lock, if
    /// its name still leads to it.
    fn held_dir(&self, sub: Option<&str>) -> Option<Dir> {
        let mut held = self.held.lock().ok()?;
        let held = held.as_mut()?;
        let root = held.root.clone()?;
        let Some(sub) = sub else {
            return Some(root);
        };
        let i = held.subs.iter().position(|(n, _)| *n == sub)?;
        if held.subs[i].1.is_at(&root, Path::new(sub)) {
            return Some(held.subs[i].1.clone());
        }
        held.subs.swap_remove(i);
        None
    }

    /// A subdirectory that must exist (callers hold the lock, which exists
    /// only once the subdirectories do).
    pub(super) fn need_sub(&self, sub: &'static str) -> Result<Dir, StateError> {
        self.open_sub(sub)?.ok_or_else(|| StateError::Io {
            what: "open",
            path: self.root.join(sub),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// A subdirectory, created if missing (a state directory made by an older
    /// virt-l3 has no `macs/`). Callers hold the lock.
    pub(super) fn ensure_sub(&self, sub: &'static str) -> Result<Dir, StateError> {
        if let Some(dir) = self.open_sub(sub)? {
            return Ok(dir);
        }
        let root = self.open_root()?.ok_or_else(|| StateError::Io {
            what: "open",
            path: self.root.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        root.sub(sub, true)?.ok_or_else(|| StateError::Io {
            what: "create",
            path: self.root.join(sub),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// Takes the state lock (blocking), creating the directory if needed
    /// (mode 0700, its subdirectories too).
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let root = Dir::open_root(&self.root, true)?.ok_or_else(|| StateError::Io {
            what: "create",
            path: self.root.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        // The lock file is created after the directories: when it exists, they do.
        let f = match root.open("lock file", "lock", OFlag::O_WRONLY)? {
            Some(f) => f,
            None => {
                for sub in CREATED {
                    root.sub(sub, true)?;
                }
                root.open("lock file", "lock", OFlag::O_WRONLY | OFlag::O_CREAT)?
                    .ok_or_else(|| StateError::Io {
                        what: "create",
                        path: root.path("lock"),
                        source: std::io::ErrorKind::NotFound.into(),
                    })?
            }
        };
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| StateError::Io {
            what: "lock",
            path: root.path("lock"),
            source: std::io::Error::from(e),
        })?;
        if let Ok(mut held) = self.held.lock() {
            *held = Some(Held {
                root: Some(root),
                subs: Vec::new(),
            });
        }
        Ok(StateLock {
            held: self.held.clone(),
            _lock: lock,
        })
    }
}
