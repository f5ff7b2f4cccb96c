//! Blocking work (reading and parsing model, latent and video files) moved off the caller's
//! async runtime, whatever the executor.

use std::panic::{AssertUnwindSafe, catch_unwind};

use futures::channel::oneshot;

use crate::error::{Error, Result};

/// Runs `work` on a thread of its own and resolves to its result.
pub(crate) async fn on_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    let name = what.to_string();
    std::thread::Builder::new()
        .name(format!("framestream-{what}"))
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
                let message = crate::device::panic_message(panic);
                Err(Error::io(name, std::io::Error::other(format!("panicked: {message}"))))
            });
            let _ = tx.send(result);
        })
        .map_err(|e| Error::io(format!("starting a thread for {what}"), e))?;
    rx.await.map_err(|_| Error::io(what.to_string(), std::io::Error::other("the thread stopped")))?
}
