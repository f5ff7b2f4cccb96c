//! `Take`: the first frames of a stream.

use futures::StreamExt;

use crate::error::Result;
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// The first `frames` frames; the upstream is dropped (cancelled) once they have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Take(pub u64);

impl Stage for Take {
    fn name(&self) -> String {
        "take".into()
    }

    fn info(&self, upstream: &StreamInfo) -> Result<StreamInfo> {
        let limit = |n: Option<u64>| Some(n.map_or(self.0, |n| n.min(self.0)));
        let total_frames = upstream.total_frames.map(|n| n.min(self.0));
        Ok(StreamInfo { total_frames, estimated_frames: limit(upstream.estimated_frames), ..upstream.clone() })
    }

    fn apply(&self, upstream: FrameStream, _: &StreamInfo, _: &OpenRequest) -> FrameStream {
        let limit = self.0;
        let mut upstream = upstream;
        Box::pin(async_stream::try_stream! {
            while let Some(chunk) = upstream.next().await {
                let chunk = chunk?;
                if chunk.first_frame() >= limit {
                    break;
                }
                let keep = (limit - chunk.first_frame()).min(chunk.frames() as u64) as usize;
                let last = chunk.first_frame() + keep as u64 >= limit;
                yield chunk.slice(0, keep)?;
                if last {
                    break;
                }
            }
        })
    }
}
