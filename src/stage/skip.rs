//! `Skip`: a stream without its first frames.

use futures::StreamExt;

use crate::error::Result;
use crate::source::rechunk;
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// Everything after the first `frames` frames, numbered from 0 again and regrouped to the
/// chunk size; timestamps stay as they were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip(pub u64);

impl Stage for Skip {
    fn name(&self) -> String {
        "skip".into()
    }

    fn info(&self, upstream: &StreamInfo) -> Result<StreamInfo> {
        let less = |n: Option<u64>| n.map(|n| n.saturating_sub(self.0));
        Ok(StreamInfo {
            total_frames: less(upstream.total_frames),
            estimated_frames: less(upstream.estimated_frames),
            ..upstream.clone()
        })
    }

    fn apply(&self, upstream: FrameStream, _: &StreamInfo, request: &OpenRequest) -> FrameStream {
        let skip = self.0;
        let after = upstream.filter_map(move |chunk| async move {
            let kept = chunk.and_then(|chunk| {
                let first_kept = skip.saturating_sub(chunk.first_frame());
                match usize::try_from(first_kept).ok().filter(|&from| from < chunk.frames()) {
                    Some(from) => chunk.slice(from, chunk.frames() - from).map(Some),
                    None => Ok(None),
                }
            });
            kept.transpose()
        });
        rechunk(Box::pin(after), request.chunk_frames())
    }
}
