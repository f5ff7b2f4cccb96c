//! `ImageBatch`: frames already in memory (host or device) as a stream.

use std::sync::Arc;

use crate::chunk::{check_frame_shape, Chunk, Shape};
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest, Rational, Source, StreamInfo};

#[derive(Debug)]
enum Frames {
    Host { data: Vec<f32>, shape: Shape },
    Device(Chunk),
}

/// A batch of frames, `[frames, height, width, channels]`, streamed chunk by chunk. Host
/// frames are uploaded one chunk at a time; a device batch is sliced on the device.
#[derive(Clone, Debug)]
pub struct ImageBatch {
    frames: Arc<Frames>,
    fps: Rational,
}

impl ImageBatch {
    /// Host frames, row-major `[frames, height, width, channels]`, values in [0, 1].
    pub fn from_host(data: Vec<f32>, shape: Shape) -> Result<Self> {
        let [frames, height, width, channels] = shape;
        check_frame_shape(height, width, channels)?;
        let len = frames * height * width * channels;
        if data.len() != len {
            return Err(Error::shape(format!(
                "{} values for a batch of shape {shape:?} ({len} values)",
                data.len()
            )));
        }
        let frame_len = height * width * channels;
        if let Some(i) = data.iter().position(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::InvalidFrame {
                frame: (i / frame_len) as u64,
                message: format!("value {} (frames hold values in [0, 1])", data[i]),
            });
        }
        Ok(Self { frames: Arc::new(Frames::Host { data, shape }), fps: Rational::default() })
    }

    /// Separate host frames of one size: each `height × width × channels` values.
    pub fn from_frames(frames: Vec<Vec<f32>>, height: usize, width: usize, channels: usize) -> Result<Self> {
        let frame_len = height * width * channels;
        if let Some((i, f)) = frames.iter().enumerate().find(|(_, f)| f.len() != frame_len) {
            return Err(Error::shape(format!(
                "frame {i} holds {} values where {width}x{height}x{channels} frames hold {frame_len}",
                f.len()
            )));
        }
        let count = frames.len();
        Self::from_host(frames.concat(), [count, height, width, channels])
    }

    /// Frames already on a device.
    /// Frames already on the device, evenly timed at [`fps`](Self::fps) (timestamps they
    /// carried are dropped).
    pub fn from_chunk(chunk: Chunk) -> Self {
        Self { frames: Arc::new(Frames::Device(chunk.without_timestamps())), fps: Rational::default() }
    }

    pub fn fps(mut self, fps: Rational) -> Self {
        self.fps = fps;
        self
    }

    fn shape(&self) -> Shape {
        match &*self.frames {
            Frames::Host { shape, .. } => *shape,
            Frames::Device(chunk) => chunk.shape(),
        }
    }
}

impl Source for ImageBatch {
    fn name(&self) -> String {
        "batch".into()
    }

    fn info(&self) -> Result<StreamInfo> {
        let [frames, height, width, channels] = self.shape();
        Ok(StreamInfo::new(width, height, channels, self.fps, Some(frames as u64)))
    }

    fn stream(&self, request: &OpenRequest) -> FrameStream {
        let frames = self.frames.clone();
        let device = request.device().clone();
        let chunk = request.chunk_frames();
        let [total, h, w, c] = self.shape();
        Box::pin(async_stream::try_stream! {
            let frame_len = h * w * c;
            let mut start = 0;
            while start < total {
                let n = chunk.min(total - start);
                let out = match &*frames {
                    Frames::Host { data, .. } => {
                        let values = &data[start * frame_len..(start + n) * frame_len];
                        Chunk::from_host(&device, values, [n, h, w, c], start as u64)?
                    }
                    Frames::Device(batch) => batch.rebind(&device)?.slice(start, n)?,
                };
                yield out;
                start += n;
            }
        })
    }
}
