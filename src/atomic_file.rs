//! Atomic outputs: write `NAME.partial-XXXXXXXX` beside the target, fsync, then move it into
//! place. A partial file that was not committed (error, cancellation, panic) is removed when
//! its guard drops, and an existing target is only replaced when asked.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// An output path being written under a temporary name beside it.
pub(crate) struct PartialPath {
    target: PathBuf,
    partial: PathBuf,
    overwrite: bool,
}

impl PartialPath {
    /// Checks the target and picks the temporary name (nothing is created yet).
    pub fn new(target: &Path, overwrite: bool) -> Result<Self> {
        let Some(name) = target.file_name() else {
            return Err(Error::config(format!("{} is not a file path", target.display())));
        };
        if !overwrite && target.exists() {
            return Err(Error::OutputExists(target.to_path_buf()));
        }
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let suffix = hasher.finish() as u32;
        let partial = target.with_file_name(format!("{}{suffix:08x}", partial_prefix(name)));
        Ok(Self { target: target.to_path_buf(), partial, overwrite })
    }

    pub fn partial(&self) -> &Path {
        &self.partial
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves the finished partial file onto the target (which must not have appeared meanwhile
    /// unless overwriting). Blocking.
    pub fn commit_blocking(mut self) -> Result<PathBuf> {
        let context = || format!("moving {} to {}", self.partial.display(), self.target.display());
        let result = if self.overwrite {
            std::fs::rename(&self.partial, &self.target).map_err(|e| Error::io(context(), e))
        } else {
            // A hard link fails if the target exists, where a rename would replace it.
            match std::fs::hard_link(&self.partial, &self.target) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    Err(Error::OutputExists(self.target.clone()))
                }
                Err(_) if self.target.exists() => Err(Error::OutputExists(self.target.clone())),
                // Filesystems without hard links.
                Err(_) => std::fs::rename(&self.partial, &self.target).map_err(|e| Error::io(context(), e)),
            }
        };
        // The partial name is now gone (renamed) or a second link, which drop removes.
        result.map(|()| std::mem::take(&mut self.target))
    }

    pub async fn commit(self) -> Result<PathBuf> {
        tokio::task::spawn_blocking(move || self.commit_blocking())
            .await
            .map_err(|e| Error::io("publishing an output", std::io::Error::other(e)))?
    }
}

/// What every partial file of an output named `name` starts with; eight hex digits follow.
fn partial_prefix(name: &std::ffi::OsStr) -> String {
    format!("{}.partial-", name.to_string_lossy())
}

/// Removes the partial files of `target` that a process which died while writing it left
/// (names exactly `NAME.partial-XXXXXXXX`; a user's file that merely looks alike stays).
#[cfg(feature = "server")]
pub(crate) fn remove_partials(target: &Path) {
    let (Some(folder), Some(name)) = (target.parent(), target.file_name()) else { return };
    let prefix = partial_prefix(name);
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let is_partial = entry.file_name().to_string_lossy().strip_prefix(&prefix).is_some_and(|suffix| {
            suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if is_partial {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Drop for PartialPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// An output file written through tokio.
pub(crate) struct AtomicFile {
    path: PartialPath,
    file: File,
}

impl AtomicFile {
    pub async fn create(target: &Path, overwrite: bool) -> Result<Self> {
        let path = PartialPath::new(target, overwrite)?;
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path.partial())
            .await
            .map_err(|e| Error::io(format!("creating {}", path.partial().display()), e))?;
        Ok(Self { path, file })
    }

    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Context for an I/O error on this output.
    pub fn context(&self) -> String {
        format!("writing {}", self.path.target().display())
    }

    /// Flushes, syncs and moves the file into place.
    pub async fn commit(mut self) -> Result<PathBuf> {
        let context = self.context();
        self.file.flush().await.map_err(|e| Error::io(&context, e))?;
        self.file.sync_all().await.map_err(|e| Error::io(&context, e))?;
        drop(self.file);
        self.path.commit().await
    }
}

/// Writes `bytes` to `target` atomically (blocking).
pub(crate) fn write_atomic(target: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    use std::io::Write;
    let path = PartialPath::new(target, overwrite)?;
    let context = || format!("writing {}", path.partial().display());
    let mut file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path.partial())
        .map_err(|e| Error::io(context(), e))?;
    file.write_all(bytes).map_err(|e| Error::io(context(), e))?;
    file.sync_all().map_err(|e| Error::io(context(), e))?;
    drop(file);
    path.commit_blocking().map(|_| ())
}
