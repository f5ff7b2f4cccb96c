//! `Chunk`: consecutive frames on a compute device.

use std::fmt;
use std::sync::Arc;

use framestream_kernels::copy::copy;
use framestream_kernels::rgb8::{rgb8, rgb8_words, unpack_rgb8};
use framestream_kernels::DeviceBuffer;

use crate::device::{with_client, Device};
use crate::error::{Error, Result};

/// The shape of a chunk: `[frames, height, width, channels]`.
pub type Shape = [usize; 4];

/// 1 or more consecutive frames on a device, `[frames, height, width, channels]` f32 in
/// [0, 1], RGB (1 and 4 channels allowed), the absolute index of its first frame, and in a
/// timed stream each frame's presentation timestamp (ticks of the stream's
/// [`time_base`](crate::StreamInfo::time_base)).
///
/// Cloning shares the device buffer; kernels never write into a chunk they were given.
///
/// The synchronous methods that compute ([`launch`](Self::launch), [`slice`](Self::slice),
/// [`concat`](Self::concat), [`from_host`](Self::from_host)) submit device work at once and
/// may block the thread: stages run on their lane's thread, where that is expected; other
/// async code wraps them in [`Device::compute`].
#[derive(Clone)]
pub struct Chunk {
    buffer: DeviceBuffer,
    shape: Shape,
    first_frame: u64,
    timestamps: Option<Arc<[i64]>>,
    device: Device,
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("shape", &self.shape)
            .field("first_frame", &self.first_frame)
            .field("timestamps", &self.timestamps)
            .finish()
    }
}

/// Checks a frame shape: no zero dimension, 1, 3 or 4 channels.
pub(crate) fn check_frame_shape(height: usize, width: usize, channels: usize) -> Result<()> {
    if height == 0 || width == 0 {
        return Err(Error::shape(format!("zero-size frames ({width}x{height})")));
    }
    if !matches!(channels, 1 | 3 | 4) {
        return Err(Error::shape(format!("{channels} channels (expected 1, 3 or 4)")));
    }
    Ok(())
}

impl Chunk {
    /// Wraps a device buffer holding exactly `shape` f32 values.
    pub fn new(device: &Device, buffer: DeviceBuffer, shape: Shape, first_frame: u64) -> Result<Self> {
        let [frames, height, width, channels] = shape;
        if frames == 0 {
            return Err(Error::shape("a chunk needs at least one frame"));
        }
        check_frame_shape(height, width, channels)?;
        if !device.holds(&buffer) {
            return Err(Error::Device("the buffer lives on another device than the chunk's".into()));
        }
        if buffer.elem_bytes() != size_of::<f32>() {
            return Err(Error::shape(format!(
                "a buffer of {}-byte elements for frames of f32 values",
                buffer.elem_bytes()
            )));
        }
        let len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::shape(format!("frames of shape {shape:?} do not fit in memory")))?;
        if buffer.len() != len {
            return Err(Error::shape(format!(
                "buffer of {} values for a chunk of shape {shape:?} ({len} values)",
                buffer.len()
            )));
        }
        Ok(Self { buffer, shape, first_frame, timestamps: None, device: device.clone() })
    }

    /// New pixels for the same frames: `buffer` holds `frames × height × width × channels`
    /// values; the numbering and timestamps stay. What a stage that keeps the frame count
    /// returns.
    pub fn with_pixels(&self, buffer: DeviceBuffer, [height, width, channels]: [usize; 3]) -> Result<Self> {
        let out = Self::new(&self.device, buffer, [self.frames(), height, width, channels], self.first_frame)?;
        Ok(Self { timestamps: self.timestamps.clone(), ..out })
    }

    /// Runs a user kernel over these frames on their device stream; the result holds as many
    /// frames of `height × width × channels` (same numbering and timestamps). See
    /// [`kernel`](crate::kernel).
    pub fn launch<K: crate::kernel::FrameKernel + ?Sized>(
        &self,
        kernel: &K,
        [height, width, channels]: [usize; 3],
    ) -> Result<Self> {
        check_frame_shape(height, width, channels)?;
        let shape = [self.frames(), height, width, channels];
        let len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::shape(format!("an output of {shape:?} values does not fit in memory")))?;
        let out = self.device.alloc(len)?;
        with_client!(self.device, client => {
            kernel.launch(crate::kernel::KernelArgs::new(client, (&self.buffer, self.shape), (&out, shape)))
        })?;
        self.with_pixels(out, [height, width, channels])
    }

    /// The same frames, shown at `timestamps` (one per frame, increasing).
    pub fn with_timestamps(mut self, timestamps: impl Into<Arc<[i64]>>) -> Result<Self> {
        let timestamps = timestamps.into();
        if timestamps.len() != self.frames() {
            return Err(Error::shape(format!(
                "{} timestamps for a chunk of {} frames",
                timestamps.len(),
                self.frames()
            )));
        }
        if let Some(i) = timestamps.windows(2).position(|w| w[1] <= w[0]) {
            return Err(Error::shape(format!(
                "timestamps must increase: frame {} is timed {} after {}",
                self.first_frame + i as u64 + 1,
                timestamps[i + 1],
                timestamps[i]
            )));
        }
        self.timestamps = Some(timestamps);
        Ok(self)
    }

    /// The same frames, untimed (for a stream evenly timed at its rate).
    pub fn without_timestamps(mut self) -> Self {
        self.timestamps = None;
        self
    }

    /// Each frame's presentation timestamp, in a timed stream.
    pub fn timestamps(&self) -> Option<&[i64]> {
        self.timestamps.as_deref()
    }

    /// Uploads host frames.
    pub fn from_host(device: &Device, data: &[f32], shape: Shape, first_frame: u64) -> Result<Self> {
        let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(data.len()) {
            return Err(Error::shape(format!(
                "{} values for frames of shape {shape:?} ({len:?} values)",
                data.len()
            )));
        }
        Self::new(device, device.upload(data)?, shape, first_frame)
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn frames(&self) -> usize {
        self.shape[0]
    }

    pub fn height(&self) -> usize {
        self.shape[1]
    }

    pub fn width(&self) -> usize {
        self.shape[2]
    }

    pub fn channels(&self) -> usize {
        self.shape[3]
    }

    /// Values in one frame.
    pub fn frame_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// Absolute index of the first frame.
    pub fn first_frame(&self) -> u64 {
        self.first_frame
    }

    /// Absolute index one past the last frame.
    pub fn end_frame(&self) -> u64 {
        self.first_frame + self.frames() as u64
    }

    pub fn buffer(&self) -> &DeviceBuffer {
        &self.buffer
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The same frames, with later work on `device`'s stream (which must drive the same
    /// device). Keep this chunk (or a clone) alive until that work has run: the stream that
    /// made the buffer recycles it when the last handle goes, whatever other streams still
    /// have queued. [`Opened`](crate::source::Opened) hands frames over safely.
    pub fn rebind(&self, device: &Device) -> Result<Chunk> {
        if !self.device.same_device(device) {
            return Err(Error::Device("frames live on another device".into()));
        }
        Ok(Chunk { device: device.clone(), ..self.clone() })
    }

    /// The frames copied onto `device`'s stream, once that copy has run. A chunk's buffer is
    /// recycled by the stream that made it as soon as it is dropped, even while another
    /// stream's queued kernels still read it; a copy the other stream has finished owns its
    /// memory.
    pub(crate) async fn handed_to(&self, device: &Device) -> Result<Chunk> {
        self.device.sync().await?;
        let out = device.alloc(self.buffer.len())?;
        with_client!(device, client => copy::<_, f32>(client, &self.buffer, 0, &out, 0, self.buffer.len()));
        device.sync().await?;
        Ok(Chunk { buffer: out, device: device.clone(), ..self.clone() })
    }

    /// The same frames, renumbered to start at `first_frame`.
    pub fn with_first_frame(mut self, first_frame: u64) -> Self {
        self.first_frame = first_frame;
        self
    }

    /// Frames `start .. start + frames` of this chunk (relative indices), copied on the device.
    pub fn slice(&self, start: usize, frames: usize) -> Result<Chunk> {
        if frames == 0 || start.checked_add(frames).is_none_or(|end| end > self.frames()) {
            return Err(Error::shape(format!(
                "frames {start}..{} of a chunk of {}",
                start.saturating_add(frames),
                self.frames()
            )));
        }
        if start == 0 && frames == self.frames() {
            return Ok(self.clone());
        }
        let len = frames * self.frame_len();
        let out = self.device.alloc(len)?;
        with_client!(self.device, client => {
            copy::<_, f32>(client, &self.buffer, start * self.frame_len(), &out, 0, len)
        });
        let [_, h, w, c] = self.shape;
        let sliced = Chunk::new(&self.device, out, [frames, h, w, c], self.first_frame + start as u64)?;
        let timestamps = self.timestamps.as_ref().map(|t| t[start..start + frames].into());
        Ok(Chunk { timestamps, ..sliced })
    }

    /// Joins consecutive chunks of one shape into one, on the device.
    pub fn concat(chunks: &[Chunk]) -> Result<Chunk> {
        let first = chunks.first().ok_or_else(|| Error::shape("nothing to join"))?;
        if chunks.len() == 1 {
            return Ok(first.clone());
        }
        let frame_len = first.frame_len();
        let mut frames = 0;
        for c in chunks {
            if !c.device.same_device(&first.device) {
                return Err(Error::shape("cannot join chunks that live on different devices"));
            }
            if c.shape[1..] != first.shape[1..] {
                return Err(Error::shape(format!(
                    "cannot join frames of shape {:?} and {:?}",
                    &first.shape[1..],
                    &c.shape[1..]
                )));
            }
            if c.first_frame != first.first_frame + frames as u64 {
                return Err(Error::shape("chunks to join are not consecutive"));
            }
            frames += c.frames();
        }
        let device = &first.device;
        let out = device.alloc(frames * frame_len)?;
        let mut at = 0;
        for c in chunks {
            let len = c.frames() * frame_len;
            with_client!(device, client => copy::<_, f32>(client, &c.buffer, 0, &out, at, len));
            at += len;
        }
        let [_, h, w, ch] = first.shape;
        let joined = Chunk::new(device, out, [frames, h, w, ch], first.first_frame)?;
        let timestamps = chunks
            .iter()
            .map(|c| c.timestamps())
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.concat())
            .map(|all| joined.clone().with_timestamps(all))
            .transpose()?;
        Ok(timestamps.unwrap_or(joined))
    }

    /// The frames as 8-bit RGB bytes (`frames × height × width × 3`), converted on the
    /// device so only bytes are read back.
    pub async fn to_rgb8(&self) -> Result<Vec<u8>> {
        let pixels = self.frames() * self.height() * self.width();
        let chunk = self.clone();
        let words = self
            .device
            .compute(move || {
                Ok(with_client!(chunk.device, client => {
                    let out = DeviceBuffer::empty_u32(client, rgb8_words(pixels));
                    rgb8(client, &chunk.buffer, pixels, chunk.channels(), &out);
                    out
                }))
            })
            .await?;
        let bytes = self.device.read_bytes(&words).await?;
        Ok(unpack_rgb8(&bytes, pixels))
    }

    /// Reads the frames back to the host.
    pub async fn to_host(&self) -> Result<HostFrames> {
        let data = self.device.read_f32(&self.buffer).await?;
        Ok(HostFrames { data, shape: self.shape, first_frame: self.first_frame })
    }
}

/// Frames on the host, `[frames, height, width, channels]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct HostFrames {
    pub data: Vec<f32>,
    pub shape: Shape,
    pub first_frame: u64,
}

impl HostFrames {
    /// Values in one frame.
    pub fn frame_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// The values of frame `i` (relative to the first).
    pub fn frame(&self, i: usize) -> &[f32] {
        let n = self.frame_len();
        &self.data[i * n..(i + 1) * n]
    }
}
