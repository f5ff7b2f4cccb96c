//! `Map`: a user closure over device chunks.

use std::sync::Arc;

use futures::StreamExt;

use crate::chunk::Chunk;
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// Applies `f` to every chunk. The closure keeps the frame count and numbering; the frame
/// size must match the stream's (checked when the chunk leaves the stage). A chunk returned
/// without timestamps gets those of the chunk it was made from.
pub struct Map<F> {
    name: String,
    f: Arc<F>,
}

impl<F> Map<F>
where
    F: Fn(Chunk) -> Result<Chunk> + Send + Sync + 'static,
{
    pub fn new(name: impl Into<String>, f: F) -> Self {
        Self { name: name.into(), f: Arc::new(f) }
    }
}

impl<F> Stage for Map<F>
where
    F: Fn(Chunk) -> Result<Chunk> + Send + Sync + 'static,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    fn apply(&self, upstream: FrameStream, _: &StreamInfo, _: &OpenRequest) -> FrameStream {
        let (f, name) = (self.f.clone(), self.name.clone());
        Box::pin(upstream.map(move |chunk| {
            let chunk = chunk?;
            let (first, frames) = (chunk.first_frame(), chunk.frames());
            let timestamps: Option<Arc<[i64]>> = chunk.timestamps().map(Into::into);
            let out = f(chunk)?;
            if out.first_frame() != first || out.frames() != frames {
                return Err(Error::Contract {
                    stage: name.clone(),
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
        }))
    }
}
