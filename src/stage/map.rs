//! `Map`: a user closure over device chunks.

use std::sync::Arc;

use futures::StreamExt;

use super::then::same_frames;
use crate::chunk::Chunk;
use crate::error::Result;
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// Applies `f` to every chunk. The closure keeps the frame count and numbering; the frame
/// size must match the stream's (checked when the chunk leaves the stage). A chunk returned
/// without timestamps gets those of the chunk it was made from.
pub struct Map<F> {
    name: String,
    f: Arc<F>,
}

impl<F> Clone for Map<F> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), f: self.f.clone() }
    }
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
            same_frames(&name, first, frames, timestamps, f(chunk)?)
        }))
    }
}
