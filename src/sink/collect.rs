//! `collect`: a stream into one batch on the device.

use super::{Report, SinkRun};
use crate::chunk::{Chunk, HostFrames};
use crate::error::{Error, Result};
use crate::stream::{OpenRequest, Source};

/// A whole stream as one device tensor.
#[derive(Clone, Debug)]
pub struct Batch {
    /// All frames, `[frames, height, width, channels]`; `None` for an empty stream.
    pub frames: Option<Chunk>,
    pub report: Report,
}

impl Batch {
    /// The frames on the host (an empty `data` for an empty stream).
    pub async fn to_host(&self) -> Result<HostFrames> {
        match &self.frames {
            Some(chunk) => chunk.to_host().await,
            None => {
                let i = &self.report.info;
                Ok(HostFrames { data: Vec::new(), shape: [0, i.height, i.width, i.channels], first_frame: 0 })
            }
        }
    }
}

/// Collects at most `max_frames` frames into one batch; a longer stream is an error (known
/// lengths are refused before anything is computed).
pub async fn collect<S: Source + ?Sized>(
    source: &S,
    request: &OpenRequest,
    max_frames: u64,
) -> Result<Batch> {
    if let Some(total) = source.info()?.total_frames && total > max_frames {
        return Err(Error::FrameLimit { limit: max_frames });
    }
    let mut run = SinkRun::open("collect", source, request)?;
    let mut chunks = Vec::new();
    let mut frames = 0u64;
    while let Some(chunk) = run.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Err(run.fail(e)),
        };
        frames += chunk.frames() as u64;
        if frames > max_frames {
            return Err(run.fail(Error::FrameLimit { limit: max_frames }));
        }
        run.advance(chunk.frames());
        chunks.push(chunk);
    }
    let joined = if chunks.is_empty() {
        None
    } else {
        let device = request.device().clone();
        match device.compute(move || Chunk::concat(&chunks)).await {
            Ok(chunk) => Some(chunk),
            Err(e) => return Err(run.fail(e)),
        }
    };
    Ok(Batch { frames: joined, report: run.finish(None) })
}
