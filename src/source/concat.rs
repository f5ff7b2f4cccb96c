//! `Concat`: one source's frames, then another's.

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::source::rechunk;
use crate::stream::{FrameStream, OpenRequest, Source, StreamInfo};

/// The frames of `first`, then those of `second` (same frame size and channels; the rate is
/// the first's). Timed streams need one time base; the second's timestamps are shifted to
/// follow the first's last frame by one frame. The join is regrouped to the chunk size.
#[derive(Clone, Debug)]
pub struct Concat<A, B> {
    first: A,
    second: B,
}

impl<A: Source, B: Source> Concat<A, B> {
    pub fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

impl<A: Source, B: Source> Source for Concat<A, B> {
    fn name(&self) -> String {
        "concat".into()
    }

    fn info(&self) -> Result<StreamInfo> {
        let (a, b) = (self.first.info()?, self.second.info()?);
        if (a.width, a.height, a.channels) != (b.width, b.height, b.channels) {
            return Err(Error::shape(format!(
                "cannot join frames of {}x{}x{} and {}x{}x{}",
                a.width, a.height, a.channels, b.width, b.height, b.channels
            )));
        }
        if a.time_base != b.time_base {
            return Err(Error::config(format!(
                "cannot join streams timed in different units ({:?} and {:?} seconds a tick)",
                a.time_base, b.time_base
            )));
        }
        let sum = |x: Option<u64>, y: Option<u64>| x.zip(y).and_then(|(x, y)| x.checked_add(y));
        Ok(StreamInfo {
            total_frames: sum(a.total_frames, b.total_frames),
            estimated_frames: sum(a.progress_frames(), b.progress_frames()),
            ..a
        })
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let info = match self.info() {
            Ok(info) => info,
            Err(e) => return crate::stream::failed(e),
        };
        let (mut first, mut second) = (self.first.open(request), self.second.open(request));
        // Ticks one frame lasts, between the first's last frame and the second's first.
        let step = info.time_base.map(|t| info.fps.frame_ticks(t));
        let joined = async_stream::try_stream! {
            let mut last = None;
            while let Some(chunk) = first.next().await {
                let chunk = chunk?;
                last = chunk.timestamps().and_then(|t| t.last().copied());
                yield chunk;
            }
            let mut shift = None;
            while let Some(chunk) = second.next().await {
                let chunk = chunk?;
                match (chunk.timestamps().map(<[i64]>::to_vec), last, step) {
                    (Some(times), Some(last), Some(step)) => {
                        let by = *shift.get_or_insert(last.saturating_add(step).saturating_sub(times[0]));
                        let times: Vec<i64> = times.iter().map(|t| t.saturating_add(by)).collect();
                        yield chunk.with_timestamps(times)?;
                    }
                    _ => yield chunk,
                }
            }
        };
        rechunk(Box::pin(joined), request.chunk_frames())
    }
}
