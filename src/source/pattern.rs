//! `TestPattern`: a seeded, deterministic synthetic video generated on the device.

use framestream_kernels::pattern::{pattern, PatternParams};

use crate::chunk::{check_frame_shape, Chunk};
use crate::device::with_client;
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest, Rational, Source, StreamInfo};

/// Moving colour gradients, counter-based noise and the frame number drawn in the picture,
/// of any size, length and frame rate. RGB. Every pixel depends only on (seed, frame, y, x),
/// so any chunking and every replay give bit-identical frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPattern {
    width: usize,
    height: usize,
    frames: u64,
    fps: Rational,
    seed: Option<u64>,
}

impl TestPattern {
    /// `frames` frames of `width × height` at 30 fps.
    pub fn new(width: usize, height: usize, frames: u64) -> Result<Self> {
        check_frame_shape(height, width, 3)?;
        if u32::try_from(width * height).is_err() {
            return Err(Error::shape(format!("{width}x{height} is too large a frame")));
        }
        if frames > u64::from(u32::MAX) {
            return Err(Error::config(format!("{frames} frames is beyond the pattern's counter")));
        }
        Ok(Self { width, height, frames, fps: Rational::default(), seed: None })
    }

    pub fn fps(mut self, fps: Rational) -> Self {
        self.fps = fps;
        self
    }

    /// The noise seed; without one the request's seed is used.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl Source for TestPattern {
    fn name(&self) -> String {
        "pattern".into()
    }

    fn info(&self) -> Result<StreamInfo> {
        Ok(StreamInfo::new(self.width, self.height, 3, self.fps, Some(self.frames)))
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let params = PatternParams {
            width: self.width as u32,
            height: self.height as u32,
            seed: self.seed.unwrap_or(request.seed()),
        };
        let (total, chunk) = (self.frames, request.chunk_frames() as u64);
        let device = request.device().clone();
        let (h, w) = (self.height, self.width);
        Box::pin(async_stream::try_stream! {
            let mut start = 0u64;
            while start < total {
                let frames = chunk.min(total - start) as usize;
                let out = device.alloc_frames(frames, h * w * 3, chunk as usize)?;
                with_client!(device, client => pattern(client, &params, start as u32, frames, &out));
                yield Chunk::new(&device, out, [frames, h, w, 3], start)?;
                start += frames as u64;
            }
        })
    }
}
