//! `Resize`: classical resampling (bicubic, Lanczos-3) by any factor.

use std::sync::Arc;

use futures::StreamExt;
use framestream_kernels::resize::{resize, ResizePlan};

pub use framestream_kernels::resize::Filter;

use crate::device::with_client;
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Scale(f64),
    Size { width: usize, height: usize },
}

/// Resamples every frame to a new size, clamped to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resize {
    target: Target,
    filter: Filter,
}

impl Resize {
    /// Both sides multiplied by `factor` (rounded, at least 1 pixel).
    pub fn scale(factor: f64, filter: Filter) -> Self {
        Self { target: Target::Scale(factor), filter }
    }

    /// To exactly `width × height`.
    pub fn to_size(width: usize, height: usize, filter: Filter) -> Self {
        Self { target: Target::Size { width, height }, filter }
    }

    fn output_size(&self, width: usize, height: usize) -> Result<(usize, usize)> {
        let (w, h) = match self.target {
            Target::Scale(f) => {
                if !(f.is_finite() && f > 0.0) {
                    return Err(Error::config(format!("scale factor {f} is not positive")));
                }
                let side = |n: usize| ((n as f64 * f).round() as usize).max(1);
                (side(width), side(height))
            }
            Target::Size { width, height } => (width, height),
        };
        if w == 0 || h == 0 {
            return Err(Error::shape(format!("resize to zero-size frames ({w}x{h})")));
        }
        if w > 65535 || h > 65535 {
            return Err(Error::shape(format!("resize to {w}x{h} is beyond 65535 pixels a side")));
        }
        Ok((w, h))
    }
}

impl Stage for Resize {
    fn name(&self) -> String {
        "resize".into()
    }

    fn info(&self, upstream: &StreamInfo) -> Result<StreamInfo> {
        let (width, height) = self.output_size(upstream.width, upstream.height)?;
        Ok(StreamInfo { width, height, ..upstream.clone() })
    }

    fn apply(&self, upstream: FrameStream, info: &StreamInfo, request: &OpenRequest) -> FrameStream {
        let (out_w, out_h) = match self.output_size(info.width, info.height) {
            Ok(size) => size,
            Err(e) => return crate::stream::failed(e),
        };
        if (out_w, out_h) == (info.width, info.height) {
            return upstream;
        }
        let device = request.device().clone();
        let (in_size, out_size, c) = ((info.height, info.width), (out_h, out_w), info.channels);
        // The horizontal pass's intermediate, [frames, in_h, out_w, c], must fit one buffer.
        let chunk_frames = request.chunk_frames();
        if let Err(e) = device.check_frames(chunk_frames, info.height * out_w * c, "a resize pass") {
            return crate::stream::failed(e);
        }
        let plan = Arc::new(with_client!(device, client => {
            ResizePlan::new(client, in_size, out_size, c, self.filter, request.chunk_frames())
        }));
        Box::pin(upstream.map(move |chunk| {
            let chunk = chunk?;
            let frames = chunk.frames();
            let out = device.alloc_frames(frames, out_w * out_h * c, plan.chunk_frames)?;
            with_client!(device, client => resize(client, &plan, chunk.buffer(), frames, &out));
            chunk.with_pixels(out, [out_h, out_w, c])
        }))
    }
}
