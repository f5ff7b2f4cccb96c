//! `Then`: a user's async function over device chunks.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// Applies an async `f` to every chunk, one at a time, in order (awaiting a readback, a
/// model running elsewhere, I/O). Like [`Map`](super::Map), `f` keeps the frame count and
/// numbering, and a chunk returned without timestamps gets its input's.
pub struct Then<F> {
    name: String,
    f: Arc<F>,
}

impl<F> Clone for Then<F> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), f: self.f.clone() }
    }
}

impl<F, Fut> Then<F>
where
    F: Fn(Chunk) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Chunk>> + Send + 'static,
{
    pub fn new(name: impl Into<String>, f: F) -> Self {
        Self { name: name.into(), f: Arc::new(f) }
    }
}

impl<F, Fut> Stage for Then<F>
where
    F: Fn(Chunk) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Chunk>> + Send + 'static,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn apply(&self, upstream: FrameStream, _: &StreamInfo, _: &OpenRequest) -> FrameStream {
        let (f, name) = (self.f.clone(), self.name.clone());
        Box::pin(upstream.then(move |chunk| {
            let (f, name) = (f.clone(), name.clone());
            async move {
                let chunk = chunk?;
                let (first, frames) = (chunk.first_frame(), chunk.frames());
                let timestamps: Option<Arc<[i64]>> = chunk.timestamps().map(Into::into);
                let out = f(chunk).await?;
                same_frames(&name, first, frames, timestamps, out)
            }
        }))
    }
}

/// Checks that a user function kept the frames it was given, and gives them back their
/// timestamps when it dropped them.
pub(crate) fn same_frames(
    stage: &str,
    first: u64,
    frames: usize,
    timestamps: Option<Arc<[i64]>>,
    out: Chunk,
) -> Result<Chunk> {
    if out.first_frame() != first || out.frames() != frames {
        return Err(Error::Contract {
            stage: stage.to_string(),
            message: format!(
                "frames {first}..{} came out as {}..{}",
                first + frames as u64,
                out.first_frame(),
                out.end_frame()
            ),
        });
    }
    match timestamps {
        Some(t) if out.timestamps().is_none() => out.with_timestamps(t),
        _ => Ok(out),
    }
}
