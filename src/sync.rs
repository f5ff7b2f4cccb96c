//! Locks that outlive a panic.

use std::sync::{Mutex, MutexGuard};

/// The guarded value, also after a panic elsewhere left the lock poisoned (that panic is
/// reported where it happened; one failed job must not take the others' locks with it).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
