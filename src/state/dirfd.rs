//! The state directory's file system access, never through a symbolic link.
//!
//! Every directory is opened with `O_DIRECTORY | O_NOFOLLOW` and checked (owned
//! by the effective user, not writable by group or others); every file under
//! it is opened, created, renamed, linked and removed relative to that
//! directory's descriptor (`openat`, `renameat`, `symlinkat`, `unlinkat`,
//! `readlinkat`), with `O_NOFOLLOW`, and temporary files with `O_EXCL`. A
//! symbolic link where a file or directory is expected is refused with
//! [`StateError::Symlink`], never followed.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{symlinkat, unlinkat, UnlinkatFlags};

use super::StateError;

/// Mode bits a state directory must not have: writable by group or others.
const UNSAFE_BITS: u32 = 0o022;

/// An open directory of the state tree (the root or one of its subdirectories).
/// Cloning shares the descriptor (the state lock keeps the ones it opened).
#[derive(Clone)]
pub(super) struct Dir {
    fd: Arc<OwnedFd>,
    /// Device and inode, from the check at opening.
    id: (u64, u64),
    path: PathBuf,
}

fn io_err(what: &'static str, path: PathBuf, e: Errno) -> StateError {
    StateError::Io {
        what,
        path,
        source: std::io::Error::from(e),
    }
}

/// What is at a name, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Missing,
    Symlink,
    File,
    Other,
}

/// What a claim name holds: a symbolic link's target, or a (legacy) file's text.
pub(super) enum LinkText {
    Missing,
    Link(OsString),
    /// Not a symbolic link: a regular file (or something else).
    NotLink,
}

impl Dir {
    /// Opens the state directory at `path` (`None` when it does not exist and
    /// `create` is false). Created, its parents included, when `create` is set:
    /// the directory itself mode 0700.
    pub(super) fn open_root(path: &Path, create: bool) -> Result<Option<Dir>, StateError> {
        match open_dir(AT_FDCWD, path, path) {
            Err(StateError::Io { source, .. })
                if create && source.kind() == std::io::ErrorKind::NotFound =>
            {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| StateError::Io {
                        what: "create",
                        path: parent.to_path_buf(),
                        source,
                    })?;
                }
                match nix::unistd::mkdir(path, Mode::S_IRWXU) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io_err("create", path.to_path_buf(), e)),
                }
                open_dir(AT_FDCWD, path, path).map(Some)
            }
            Err(StateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Opens the subdirectory `name` (`None` when absent and `create` is false;
    /// created mode 0700 when `create` is set).
    pub(super) fn sub(&self, name: &str, create: bool) -> Result<Option<Dir>, StateError> {
        let path = self.path(name);
        if create {
            match mkdirat(&self.fd, name, Mode::S_IRWXU) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io_err("create", path, e)),
            }
        }
        match open_dir(&self.fd, Path::new(name), &path) {
            Err(StateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Whether `name` in `parent` is, without following a link, the directory
    /// this descriptor holds.
    pub(super) fn is_at(&self, parent: &Dir, name: &Path) -> bool {
        fstatat(&parent.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|n| {
            (n.st_dev, n.st_ino) == self.id
                && SFlag::from_bits_truncate(n.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
        })
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// What `name` is, without following it.
    pub(super) fn kind(&self, name: &str) -> Result<Kind, StateError> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(
                match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                    SFlag::S_IFLNK => Kind::Symlink,
                    SFlag::S_IFREG => Kind::File,
                    _ => Kind::Other,
                },
            ),
            Err(Errno::ENOENT) => Ok(Kind::Missing),
            Err(e) => Err(io_err("examine", self.path(name), e)),
        }
    }

    /// Refuses `name` if it is a symbolic link (`what` names it in the error).
    pub(super) fn refuse_symlink(&self, what: &'static str, name: &str) -> Result<(), StateError> {
        match self.kind(name)? {
            Kind::Symlink => Err(StateError::Symlink {
                what,
                path: self.path(name),
            }),
            _ => Ok(()),
        }
    }

    /// Opens `name` with `flags | O_NOFOLLOW | O_CLOEXEC` (`None` when it does
    /// not exist); a symbolic link is refused.
    pub(super) fn open(
        &self,
        what: &'static str,
        name: &str,
        flags: OFlag,
    ) -> Result<Option<File>, StateError> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match openat(&self.fd, name, flags, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(fd) => Ok(Some(File::from(fd))),
            Err(Errno::ENOENT) if !flags.contains(OFlag::O_CREAT) => Ok(None),
            Err(Errno::ELOOP) => Err(StateError::Symlink {
                what,
                path: self.path(name),
            }),
            Err(e) => Err(io_err("open", self.path(name), e)),
        }
    }

    /// Reads the whole file `name` (`None` when it does not exist).
    pub(super) fn read(
        &self,
        what: &'static str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let Some(mut f) = self.open(what, name, OFlag::O_RDONLY)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|source| StateError::Io {
            what: "read",
            path: self.path(name),
            source,
        })?;
        Ok(Some(bytes))
    }

    /// Creates the temporary file `name` (mode 0600, `O_EXCL`). A leftover
    /// regular file of a killed writer is removed first (callers hold the
    /// lock); a symbolic link is refused.
    pub(super) fn create_temp(&self, name: &str) -> Result<File, StateError> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL;
        match self.open("temporary file", name, flags) {
            Err(StateError::Io { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {
                self.refuse_symlink("temporary file", name)?;
                self.remove(name)?;
                self.open("temporary file", name, flags)?
                    .ok_or_else(|| io_err("create", self.path(name), Errno::ENOENT))
            }
            other => other?.ok_or_else(|| io_err("create", self.path(name), Errno::ENOENT)),
        }
    }

    /// `renameat(2)` within this directory (a link at `to` is replaced, not followed).
    pub(super) fn rename(&self, from: &str, to: &str) -> Result<(), StateError> {
        renameat(&self.fd, from, &self.fd, to).map_err(|e| io_err("replace", self.path(to), e))
    }

    /// Flushes this directory's entries (names created, renamed, removed) to
    /// its disk: `fsync(2)` on the directory.
    pub(super) fn sync(&self) -> Result<(), StateError> {
        nix::unistd::fsync(&self.fd).map_err(|e| io_err("flush", self.path.clone(), e))
    }

    /// Flushes every file's data of the file system this directory is on, in
    /// one call (`syncfs(2)`), where many `fdatasync(2)` would each wait.
    pub(super) fn sync_file_system(&self) -> Result<(), StateError> {
        nix::unistd::syncfs(&self.fd).map_err(|e| io_err("flush", self.path.clone(), e))
    }

    /// `symlinkat(2)`: creates the link `name` pointing at `target`.
    pub(super) fn symlink(&self, target: &str, name: &str) -> Result<(), Errno> {
        symlinkat(target, &self.fd, name)
    }

    /// Removes `name` (a link itself, never its target); absent is fine.
    pub(super) fn remove(&self, name: &str) -> Result<(), StateError> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io_err("remove", self.path(name), e)),
        }
    }

    /// The target of the symbolic link `name`.
    pub(super) fn read_link(&self, name: &str) -> LinkText {
        match readlinkat(&self.fd, name) {
            Ok(t) => LinkText::Link(t),
            Err(Errno::EINVAL) => LinkText::NotLink,
            Err(_) => LinkText::Missing,
        }
    }

    /// The names in this directory (`.` and `..` left out).
    pub(super) fn names(&self) -> Result<Vec<String>, StateError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let list_err = |e| io_err("list", self.path.clone(), e);
        let mut dir =
            nix::dir::Dir::openat(&self.fd, ".", flags, Mode::empty()).map_err(list_err)?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(list_err)?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name != "." && name != ".." {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
}

/// Opens a directory without following a link at its last component, and
/// checks its owner and mode.
fn open_dir<Fd: std::os::fd::AsFd>(at: Fd, name: &Path, path: &Path) -> Result<Dir, StateError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(&at, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Err(symlink_dir(path)),
        Err(Errno::ENOTDIR)
            if fstatat(&at, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| {
                SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
            }) =>
        {
            return Err(symlink_dir(path))
        }
        Err(e) => return Err(io_err("open", path.to_path_buf(), e)),
    };
    let st = fstat(&fd).map_err(|e| io_err("examine", path.to_path_buf(), e))?;
    let euid = effective_uid();
    let mode = st.st_mode & 0o7777;
    if st.st_uid != euid || mode & UNSAFE_BITS != 0 {
        return Err(StateError::Unsafe {
            path: path.to_path_buf(),
            mode,
            uid: st.st_uid,
            must_owner: if euid == 0 {
                "root".to_string()
            } else {
                format!("uid {euid}")
            },
            chown_to: if euid == 0 {
                "root:".to_string()
            } else {
                euid.to_string()
            },
        });
    }
    Ok(Dir {
        fd: Arc::new(fd),
        id: (st.st_dev, st.st_ino),
        path: path.to_path_buf(),
    })
}

fn symlink_dir(path: &Path) -> StateError {
    StateError::Symlink {
        what: "state directory",
        path: path.to_path_buf(),
    }
}

/// This process's effective user (asked once: virt-l3 never changes it).
fn effective_uid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| nix::unistd::geteuid().as_raw())
}
