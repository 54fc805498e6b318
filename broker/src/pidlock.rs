//! A directory owned by one process at a time: `flock` on a file in it that holds the owner's
//! pid, so that a second process can say who holds it. The lock goes with the process, however
//! it ends.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Held while the value lives.
#[derive(Debug)]
pub struct PidLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum PidLockError {
    #[error("{} is in use by another process (pid {pid})", dir.display())]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PidLock {
    /// Takes `dir/name` without waiting, or says which process holds it.
    pub fn try_acquire(dir: &Path, name: &str) -> Result<PidLock, PidLockError> {
        Self::acquire(dir, name, libc::LOCK_EX | libc::LOCK_NB)
    }

    /// Takes `dir/name`, waiting while another process holds it.
    pub fn wait(dir: &Path, name: &str) -> Result<PidLock, PidLockError> {
        Self::acquire(dir, name, libc::LOCK_EX)
    }

    fn acquire(dir: &Path, name: &str, how: libc::c_int) -> Result<PidLock, PidLockError> {
        let path = dir.join(name);
        let io = |source| PidLockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), how) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(e));
            }
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(PidLockError::Held {
                dir: dir.to_path_buf(),
                pid: match pid.trim() {
                    "" => "unknown".into(),
                    pid => pid.into(),
                },
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(PidLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = PidLock::try_acquire(dir.path(), "lock").unwrap();
        // flock locks belong to open files, so a second open in this process conflicts too.
        match PidLock::try_acquire(dir.path(), "lock") {
            Err(PidLockError::Held { pid, .. }) => {
                assert_eq!(pid, std::process::id().to_string())
            }
            other => panic!("{other:?}"),
        }
        drop(held);
        PidLock::try_acquire(dir.path(), "lock").unwrap();
    }
}
