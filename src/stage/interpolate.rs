//! `Interpolate`: frame interpolation by RIFE, the stage that multiplies the frame count.
//!
//! Between every two consecutive input frames it places one new frame per timestep (a
//! multiplier `k` gives the timesteps `1/k … (k−1)/k`), so `n` frames become `(n − 1)·k + 1`:
//! the last frame is not followed by frames of its own (nothing to interpolate towards), and
//! every input frame comes out unchanged. The last frame of each chunk is carried into the
//! next, so the chunking never changes a frame.


use framestream_kernels::DeviceBuffer;
use framestream_kernels::copy::copy;
use framestream_kernels::flow::{Scaling, Slice, resize};
use futures::StreamExt;

use crate::chunk::Chunk;
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::model::Precision;
use crate::model::rife::{DeviceRife, Prepared, RifeModel};
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// The scales RIFE's pyramid runs at (Practical-RIFE's `--scale`): below 1 for large frames
/// (0.5 for 4K), above 1 for small ones.
const SCALES: [f64; 5] = [0.25, 0.5, 1.0, 2.0, 4.0];

/// The largest frame-rate factor.
const MAX_FACTOR: usize = 256;

/// Frame interpolation by a RIFE model; frames stay on the device.
#[derive(Clone, Debug)]
pub struct Interpolate {
    model: RifeModel,
    /// Where the new frames sit between two inputs, increasing, in (0, 1); `Err`: a
    /// multiplier out of range, refused when the stream opens.
    timesteps: std::result::Result<Vec<f64>, usize>,
    scale: f64,
    /// Pairs less alike than this (SSIM of their thumbnails) are a scene cut.
    scene_cut: Option<f64>,
    precision: Precision,
}

impl Interpolate {
    /// By `model`, doubling the frame rate (one frame between every two), at scale 1, without
    /// scene-cut detection, in f32.
    pub fn rife(model: RifeModel) -> Self {
        Self { model, timesteps: Ok(vec![0.5]), scale: 1.0, scene_cut: None, precision: Precision::F32 }
    }

    /// `k − 1` new frames between every two, evenly spaced: the frame rate times `k`
    /// (2 ≤ k ≤ 256).
    pub fn multiplier(mut self, k: usize) -> Self {
        self.timesteps = match k {
            2..=MAX_FACTOR => Ok((1..k).map(|j| j as f64 / k as f64).collect()),
            _ => Err(k),
        };
        self
    }

    /// New frames at these fractions of the way from each frame to the next (increasing,
    /// each strictly between 0 and 1): the frame rate times `timesteps.len() + 1`.
    pub fn timesteps(mut self, timesteps: impl IntoIterator<Item = f64>) -> Self {
        self.timesteps = Ok(timesteps.into_iter().take(MAX_FACTOR).collect());
        self
    }

    /// The scale of the flow pyramid (0.25, 0.5, 1, 2 or 4): 0.5 for 4K frames, as the
    /// models' authors advise, 2 or 4 for small frames.
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Detects scene cuts: where the structural similarity of two frames' 32×32 luma
    /// thumbnails (over the whole thumbnail; 1 for equal pictures, near 0 or below for
    /// unrelated ones) is below `threshold` (0.3 is a good start), the first frame is
    /// repeated instead of morphing one scene into the other.
    pub fn scene_cut(mut self, threshold: f64) -> Self {
        self.scene_cut = Some(threshold);
        self
    }

    /// The element type the model computes in (f32 by default; f16/bf16 where the device
    /// has them). Frames enter and leave as f32.
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Frames out for every input frame (but the last).
    fn factor(&self) -> u64 {
        self.steps().len() as u64 + 1
    }

    /// The timesteps (none for a multiplier out of range).
    fn steps(&self) -> &[f64] {
        self.timesteps.as_deref().unwrap_or_default()
    }

    /// Output frames for `n` input frames.
    pub fn frames_out(&self, n: u64) -> u64 {
        n.saturating_sub(1).saturating_mul(self.factor()).saturating_add(n.min(1))
    }

    fn check(&self, upstream: &StreamInfo) -> Result<()> {
        let steps = match &self.timesteps {
            Err(k) => return Err(Error::config(format!("interpolation multiplier {k} (2 to {MAX_FACTOR})"))),
            Ok(steps) if steps.is_empty() => return Err(Error::config("interpolation needs at least one timestep")),
            Ok(steps) => steps,
        };
        if let Some(t) = steps.iter().find(|t| !(**t > 0.0 && **t < 1.0)) {
            return Err(Error::config(format!("timestep {t} is not strictly between 0 and 1")));
        }
        if steps.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::config(format!("timesteps {steps:?} do not increase")));
        }
        if steps.len() >= MAX_FACTOR {
            return Err(Error::config(format!("more than {} frames between every two", MAX_FACTOR - 1)));
        }
        if !SCALES.contains(&self.scale) {
            return Err(Error::config(format!("RIFE scale {} (one of 0.25, 0.5, 1, 2, 4)", self.scale)));
        }
        if let Some(t) = self.scene_cut && !(-1.0..=1.0).contains(&t) {
            return Err(Error::config(format!("scene-cut threshold {t} (an SSIM, between −1 and 1)")));
        }
        if upstream.channels != 3 {
            return Err(Error::shape(format!(
                "RIFE interpolates RGB frames; this stream has {} channel{}",
                upstream.channels,
                if upstream.channels == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }
}

impl Stage for Interpolate {
    fn name(&self) -> String {
        "interpolate".into()
    }

    fn info(&self, upstream: &StreamInfo) -> Result<StreamInfo> {
        self.check(upstream)?;
        let k = self.factor() as u32;
        // Timestamps in ticks k times finer, so the new frames fall on whole ticks.
        let time_base = upstream
            .time_base
            .map(|tb| tb.divided_by(k).ok_or_else(|| Error::config(format!("the time base {tb} divided by {k} overflows"))))
            .transpose()?;
        let fps = upstream.fps;
        Ok(StreamInfo {
            fps: fps.times(k).ok_or_else(|| Error::config(format!("the frame rate {fps} times {k} overflows")))?,
            total_frames: upstream.total_frames.map(|n| self.frames_out(n)),
            estimated_frames: upstream.estimated_frames.map(|n| self.frames_out(n)),
            time_base,
            ..upstream.clone()
        })
    }

    fn upstream_request(&self, request: &OpenRequest) -> OpenRequest {
        let frames = (request.chunk_frames() as u64).div_ceil(self.factor()).max(1);
        request.clone().with_chunk_frames(frames as usize)
    }

    fn apply(&self, upstream: FrameStream, upstream_info: &StreamInfo, request: &OpenRequest) -> FrameStream {
        let (this, info, request) = (self.clone(), upstream_info.clone(), request.clone());
        let mut upstream = upstream;
        Box::pin(async_stream::try_stream! {
            this.check(&info)?;
            let device = request.device().clone();
            let model = this.model.on_in(&device, this.precision)?;
            let frame = FrameGeometry::new(&this.model, &info, this.scale);
            let largest = model.largest_buffer(frame.padded(), this.scale);
            if largest >= 1 << 31 {
                Err(Error::shape(format!(
                    "{}x{} frames are too large for RIFE at scale {} (a buffer of {largest} values; at most 2^31)",
                    frame.w, frame.h, this.scale
                )))?;
            }
            device.check_buffer(largest * this.precision.bytes(), "RIFE's largest buffer")?;
            // The kernels index chunks with 32 bits: what comes in and what goes out.
            let inbound = this.upstream_request(&request).chunk_frames();
            for (frames, what) in [(request.chunk_frames(), "output"), (inbound, "input")] {
                if frames.saturating_mul(info.frame_len()) >= 1 << 31 {
                    Err(Error::shape(format!(
                        "{what} chunks of {frames} frames of {}x{} are too large to interpolate (2^31 values at most): use smaller chunks",
                        info.width, info.height
                    )))?;
                }
            }
            let _memory = device.reserve(model.planned_bytes(frame.padded(), this.scale) as u64).await?;
            let k = this.factor() as i64;
            let mut out = Output::new(&device, request.chunk_frames(), [info.height, info.width, info.channels]);
            let mut previous: Option<Held> = None;
            while let Some(chunk) = upstream.next().await {
                let chunk = chunk?;
                let thumbs = match this.scene_cut {
                    Some(_) => Some(thumbnails(&device, &chunk).await?),
                    None => None,
                };
                for i in 0..chunk.frames() {
                    let thumb = thumbs.as_ref().map(|t| t[i * THUMB * THUMB * 3..(i + 1) * THUMB * THUMB * 3].to_vec());
                    let current = Held::new(&device, &model, &chunk, i, &frame, thumb)?;
                    if let Some(before) = &previous {
                        let cut = match (this.scene_cut, &before.thumbnail, &current.thumbnail) {
                            (Some(threshold), Some(a), Some(b)) => ssim(a, b) < threshold,
                            _ => false,
                        };
                        let steps = this.steps();
                        let ticks = match (before.pts, current.pts) {
                            (Some(a), Some(b)) => Some((finer(a, k)?, finer(b, k)?)),
                            _ => None,
                        };
                        let mut last = ticks.map(|(a, _)| a);
                        for (j, &t) in steps.iter().enumerate() {
                            let (buffer, slot) = out.slot()?;
                            if cut {
                                before.copy_to(&device, buffer, slot);
                            } else {
                                model.interpolate(&device, &before.prepared, &current.prepared, t as f32, this.scale, (frame.h, frame.w), buffer, slot)?;
                            }
                            let pts = ticks.zip(last).map(|((a, b), last)| between((a, b), t, last, steps.len() - j));
                            last = pts;
                            if let Some(chunk) = out.filled(pts)? {
                                yield chunk;
                            }
                        }
                    }
                    let (buffer, slot) = out.slot()?;
                    current.copy_to(&device, buffer, slot);
                    if let Some(chunk) = out.filled(current.pts.map(|p| finer(p, k)).transpose()?)? {
                        yield chunk;
                    }
                    previous = Some(current);
                }
                // The frame carried into the next chunk, apart from this chunk.
                previous = previous.map(Held::alone).transpose()?;
            }
            if let Some(chunk) = out.finish()? {
                yield chunk;
            }
        })
    }
}

/// Timestamp `pts` in ticks `k` times finer.
fn finer(pts: i64, k: i64) -> Result<i64> {
    pts.checked_mul(k).ok_or_else(|| Error::shape(format!("timestamp {pts} overflows in ticks {k} times finer")))
}

/// The timestamp of the frame at `t` between frames timed `a` and `b` (fine ticks): the
/// nearest tick, after `last` (the pair's previous frame) and leaving a tick for each of the
/// `left − 1` frames after it. The gap holds them all: it is at least `k` fine ticks.
fn between((a, b): (i64, i64), t: f64, last: i64, left: usize) -> i64 {
    let at = a as f64 + (t * (b as f64 - a as f64)).round();
    (at as i64).clamp(last + 1, b - left as i64)
}

/// Frame and padded sizes of a stream.
struct FrameGeometry {
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
}

impl FrameGeometry {
    fn new(model: &RifeModel, info: &StreamInfo, scale: f64) -> Self {
        let multiple = model.size_multiple(scale);
        let (h, w) = (info.height, info.width);
        Self { h, w, ph: h.next_multiple_of(multiple), pw: w.next_multiple_of(multiple) }
    }

    fn padded(&self) -> (usize, usize) {
        (self.ph, self.pw)
    }
}

/// An input frame kept for the next pair: where it is, what the model prepared from it, its
/// timestamp and its thumbnail for scene-cut detection.
struct Held {
    chunk: Chunk,
    index: usize,
    prepared: Prepared,
    pts: Option<i64>,
    thumbnail: Option<Vec<f32>>,
}

/// Thumbnail side for scene-cut detection.
const THUMB: usize = 32;

/// 32×32 RGB thumbnails of every frame of `chunk` (bilinear, as PyTorch's `interpolate`).
async fn thumbnails(device: &Device, chunk: &Chunk) -> Result<Vec<f32>> {
    let [n, h, w, c] = chunk.shape();
    let small = device.alloc(n * THUMB * THUMB * c)?;
    with_client!(device, client => resize::<_, f32>(
        client,
        Slice::dense(chunk.buffer(), c),
        (n, h, w),
        c,
        Slice::dense(&small, c),
        (THUMB, THUMB),
        (h as f32 / THUMB as f32, w as f32 / THUMB as f32),
        Scaling::NONE,
    ));
    device.read_f32(&small).await
}

impl Held {
    fn new(
        device: &Device,
        model: &DeviceRife,
        chunk: &Chunk,
        index: usize,
        frame: &FrameGeometry,
        thumbnail: Option<Vec<f32>>,
    ) -> Result<Self> {
        let prepared = model.prepare(device, chunk.buffer(), index, (frame.h, frame.w), frame.padded())?;
        Ok(Self { chunk: chunk.clone(), index, prepared, pts: chunk.timestamps().map(|t| t[index]), thumbnail })
    }

    /// The same frame in a chunk of its own, so its chunk's memory can go.
    fn alone(self) -> Result<Self> {
        Ok(Self { chunk: self.chunk.slice(self.index, 1)?, index: 0, ..self })
    }

    /// Copies the frame into slot `slot` of `buffer`.
    fn copy_to(&self, device: &Device, buffer: &DeviceBuffer, slot: usize) {
        let len = self.chunk.frame_len();
        with_client!(device, client => copy::<_, f32>(client, self.chunk.buffer(), self.index * len, buffer, slot * len, len));
    }
}

/// Output chunks filled frame by frame.
struct Output {
    device: Device,
    chunk_frames: usize,
    /// Height, width, channels.
    frame: [usize; 3],
    buffer: Option<DeviceBuffer>,
    written: usize,
    next_frame: u64,
    timestamps: Vec<i64>,
}

impl Output {
    fn new(device: &Device, chunk_frames: usize, frame: [usize; 3]) -> Self {
        Self { device: device.clone(), chunk_frames, frame, buffer: None, written: 0, next_frame: 0, timestamps: Vec::new() }
    }

    fn frame_len(&self) -> usize {
        self.frame.iter().product()
    }

    /// The buffer and slot the next frame goes to.
    fn slot(&mut self) -> Result<(&DeviceBuffer, usize)> {
        if self.buffer.is_none() {
            let (n, len) = (self.chunk_frames, self.frame_len());
            self.buffer = Some(self.device.alloc_frames(n, len, n)?);
        }
        Ok((self.buffer.as_ref().expect("allocated above"), self.written))
    }

    /// Counts the frame just written to the slot; a full chunk comes back.
    fn filled(&mut self, pts: Option<i64>) -> Result<Option<Chunk>> {
        self.written += 1;
        self.timestamps.extend(pts);
        if self.written == self.chunk_frames { self.finish() } else { Ok(None) }
    }

    /// The frames written so far as a chunk (the stream's short last one when not full).
    fn finish(&mut self) -> Result<Option<Chunk>> {
        let Some(buffer) = self.buffer.take() else {
            return Ok(None);
        };
        let frames = std::mem::take(&mut self.written);
        let mut buffer = buffer;
        if frames < self.chunk_frames {
            let len = frames * self.frame_len();
            let short = self.device.alloc_frames(frames, self.frame_len(), self.chunk_frames)?;
            with_client!(self.device, client => copy::<_, f32>(client, &buffer, 0, &short, 0, len));
            buffer = short;
        }
        let [h, w, c] = self.frame;
        let chunk = Chunk::new(&self.device, buffer, [frames, h, w, c], self.next_frame)?;
        self.next_frame += frames as u64;
        let timestamps = std::mem::take(&mut self.timestamps);
        Ok(Some(if timestamps.is_empty() { chunk } else { chunk.with_timestamps(timestamps)? }))
    }
}

/// The structural similarity of two RGB thumbnails' luma, taken over the whole thumbnail:
/// the product of their means', contrasts' and structures' likeness (1 for equal pictures,
/// near 0 or below for unrelated ones). One window rather than many small ones, so smooth
/// pictures of different scenes are told apart by their layout, not by local texture.
fn ssim(a: &[f32], b: &[f32]) -> f64 {
    let luma = |v: &[f32]| -> Vec<f64> {
        v.chunks(3).map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])).collect()
    };
    let (a, b) = (luma(a), luma(b));
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut va, mut vb, mut cov) = (0.0, 0.0, 0.0);
    for (u, v) in a.iter().zip(&b) {
        va += (u - ma) * (u - ma);
        vb += (v - mb) * (v - mb);
        cov += (u - ma) * (v - mb);
    }
    let (va, vb, cov) = (va / n, vb / n, cov / n);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
}

#[cfg(test)]
mod tests {
    use super::ssim;

    #[test]
    fn ssim_tells_scenes_apart() {
        let picture: Vec<f32> = (0..32 * 32 * 3).map(|i| ((i / 3) % 32) as f32 / 32.0).collect();
        let shifted: Vec<f32> = (0..32 * 32 * 3).map(|i| (((i / 3) % 32) as f32 + 1.0) / 33.0).collect();
        let inverted: Vec<f32> = picture.iter().map(|v| 1.0 - v).collect();
        assert!((ssim(&picture, &picture) - 1.0).abs() < 1e-12);
        assert!(ssim(&picture, &shifted) > 0.9);
        assert!(ssim(&picture, &inverted) < 0.0);
    }
}
