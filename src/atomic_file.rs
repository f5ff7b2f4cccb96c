//! Atomic outputs: write `NAME.partial-XXXXXXXX` beside the target, fsync, then move it into
//! place. A file that was not committed (error, cancellation, panic) is removed when dropped,
//! and an existing target is only replaced when asked.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use tokio::fs::File;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// The temporary name beside `target`.
fn partial_path(target: &Path) -> PathBuf {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!("{name}.partial-{:08x}", hasher.finish() as u32))
}

fn check_target(target: &Path, overwrite: bool) -> Result<()> {
    if target.file_name().is_none() {
        return Err(Error::config(format!("{} is not a file path", target.display())));
    }
    if !overwrite && target.exists() {
        return Err(Error::OutputExists(target.to_path_buf()));
    }
    Ok(())
}

/// Moves the finished `partial` onto `target` (no-clobber unless `overwrite`).
fn publish(partial: &Path, target: &Path, overwrite: bool) -> Result<()> {
    let context = || format!("moving {} to {}", partial.display(), target.display());
    if overwrite {
        return std::fs::rename(partial, target).map_err(|e| Error::io(context(), e));
    }
    // A hard link fails if the target appeared meanwhile, where a rename would replace it.
    match std::fs::hard_link(partial, target) {
        Ok(()) => {
            let _ = std::fs::remove_file(partial);
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Error::OutputExists(target.into())),
        Err(_) => {
            // Filesystems without hard links: check, then rename.
            if target.exists() {
                return Err(Error::OutputExists(target.into()));
            }
            std::fs::rename(partial, target).map_err(|e| Error::io(context(), e))
        }
    }
}

/// An output file being written.
pub(crate) struct AtomicFile {
    target: PathBuf,
    partial: PathBuf,
    overwrite: bool,
    file: Option<File>,
}

impl AtomicFile {
    pub async fn create(target: &Path, overwrite: bool) -> Result<Self> {
        check_target(target, overwrite)?;
        let partial = partial_path(target);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
            .map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
        Ok(Self { target: target.to_path_buf(), partial, overwrite, file: Some(file) })
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is open until commit")
    }

    /// Context for an I/O error on this output.
    pub fn context(&self) -> String {
        format!("writing {}", self.target.display())
    }

    /// Flushes, syncs and moves the file into place.
    pub async fn commit(mut self) -> Result<PathBuf> {
        let mut file = self.file.take().expect("commit once");
        let context = self.context();
        file.flush().await.map_err(|e| Error::io(&context, e))?;
        file.sync_all().await.map_err(|e| Error::io(&context, e))?;
        drop(file);
        let (partial, target, overwrite) = (self.partial.clone(), self.target.clone(), self.overwrite);
        tokio::task::spawn_blocking(move || publish(&partial, &target, overwrite))
            .await
            .map_err(|e| Error::io(&context, std::io::Error::other(e)))??;
        Ok(std::mem::take(&mut self.target))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // After a commit the partial name no longer exists; otherwise nothing half-written stays.
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// Writes `bytes` to `target` atomically (blocking).
pub(crate) fn write_atomic(target: &Path, bytes: &[u8], overwrite: bool) -> Result<()> {
    check_target(target, overwrite)?;
    let partial = partial_path(target);
    let result = (|| {
        use std::io::Write;
        let context = || format!("writing {}", partial.display());
        let mut file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| Error::io(context(), e))?;
        file.write_all(bytes).map_err(|e| Error::io(context(), e))?;
        file.sync_all().map_err(|e| Error::io(context(), e))?;
        drop(file);
        publish(&partial, target, overwrite)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}
