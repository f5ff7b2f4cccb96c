//! The streaming machinery the VAE decoders share: a chain of modules with per-module
//! temporal state and a depth-first scheduler, so a whole video never sits in memory and any
//! chunking gives the same frames as one whole-sequence decode; and the frame stream a
//! decode source hands out, within the device's memory budget.
//!
//! Each module (a resblock, an upsampler, a head…) has an input queue. A step runs the deepest
//! module with work on at most its piece size of frames (from a byte budget), so the frames in
//! flight are about one piece per level plus the carried state.

use std::any::TypeId;
use std::collections::VecDeque;

use framestream_kernels::{DeviceBuffer, Element};
use framestream_kernels::copy::copy;
use framestream_kernels::temporal::{Frames, TemporalConv3d};
use framestream_kernels::tile::crop;

use crate::chunk::Chunk;
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::stream::{FrameStream, OpenRequest};

/// The height and width of one level of a decoder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub height: usize,
    pub width: usize,
}

impl Level {
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// The level ×2 in both sides.
    pub fn doubled(&self) -> Level {
        Level { height: 2 * self.height, width: 2 * self.width }
    }
}

/// One stage of a streaming decoder.
pub(crate) trait Module<E: Element>: Send {
    /// Takes `x` (may be none) and, with `end`, the end of the stream; returns the output
    /// frames now complete.
    fn push(&mut self, device: &Device, x: Option<Frames>, end: bool) -> Result<Option<Frames>>;

    /// Elements the module carries between steps at most, besides its input queue, when it
    /// steps `piece` frames of `output` values out per input frame.
    fn state_len(&self, piece: usize, output: usize) -> usize;
}

/// Runs a temporal convolution on the device's client, without activation; with a residual
/// added (`out = r + y`) when given.
pub(crate) fn push_conv<E: Element>(
    device: &Device,
    conv: &mut TemporalConv3d<E>,
    x: Option<&Frames>,
    end: bool,
    residual: Option<&DeviceBuffer>,
) -> Option<Frames> {
    let (body, n) = x.map_or((None, 0), |f| (Some(&f.buffer), f.frames));
    with_client!(device, client => {
        conv.push(client, body, n, end, framestream_kernels::conv::Activation::None, residual.map(|r| (r, 1.0)))
    })
}

impl<E: Element> Module<E> for TemporalConv3d<E> {
    fn push(&mut self, device: &Device, x: Option<Frames>, end: bool) -> Result<Option<Frames>> {
        Ok(push_conv(device, self, x.as_ref(), end, None))
    }

    fn state_len(&self, _piece: usize, _output: usize) -> usize {
        self.cache_len()
    }
}

/// Frames waiting between two modules, and whether the end of the stream follows them.
pub(crate) struct FrameQueue {
    frame_len: usize,
    /// Buffers and the first frame of each not yet taken.
    pieces: VecDeque<(Frames, usize)>,
    frames: usize,
    /// The end marker, until it is passed on.
    end: bool,
}

impl FrameQueue {
    pub fn new(frame_len: usize) -> Self {
        Self { frame_len, pieces: VecDeque::new(), frames: 0, end: false }
    }

    pub fn push(&mut self, frames: Frames) {
        if frames.frames > 0 {
            self.frames += frames.frames;
            self.pieces.push_back((frames, 0));
        }
    }

    fn ready(&self) -> bool {
        self.frames > 0 || self.end
    }

    /// Up to `max` frames from the front buffer (none when only the end is left), and
    /// whether the end follows them (then it is passed on).
    fn take<E: Element>(&mut self, device: &Device, max: usize) -> Result<(Option<Frames>, bool)> {
        let taken = match self.pieces.front_mut() {
            None => None,
            Some((piece, start)) => {
                let n = max.min(piece.frames - *start);
                let out = if *start == 0 && n == piece.frames {
                    self.pieces.pop_front().expect("front").0
                } else {
                    let buffer = device.alloc_as::<E>(n * self.frame_len, 0)?;
                    let len = self.frame_len;
                    with_client!(device, client => {
                        copy::<_, E>(client, &piece.buffer, *start * len, &buffer, 0, n * len)
                    });
                    *start += n;
                    if *start == piece.frames {
                        self.pieces.pop_front();
                    }
                    Frames { buffer, frames: n }
                };
                self.frames -= n;
                Some(out)
            }
        };
        let end = self.end && self.frames == 0;
        if end {
            self.end = false;
        }
        Ok((taken, end))
    }

    /// Exactly `n` frames (at most those queued) in one buffer of room for `room` frames.
    pub fn take_exact<E: Element>(&mut self, device: &Device, n: usize, room: usize) -> Result<DeviceBuffer> {
        assert!(n <= self.frames, "{n} frames asked of a queue of {}", self.frames);
        if let Some((piece, 0)) = self.pieces.front() && piece.frames == n && room <= n {
            self.frames -= n;
            return Ok(self.pieces.pop_front().expect("front").0.buffer);
        }
        let len = self.frame_len;
        let out = device.alloc_as::<E>(n * len, room.max(n) * len)?;
        let mut done = 0;
        while done < n {
            let (piece, start) = self.pieces.front_mut().expect("queued frames");
            let k = (n - done).min(piece.frames - *start);
            with_client!(device, client => {
                copy::<_, E>(client, &piece.buffer, *start * len, &out, done * len, k * len)
            });
            *start += k;
            done += k;
            if *start == piece.frames {
                self.pieces.pop_front();
            }
        }
        self.frames -= n;
        Ok(out)
    }
}

/// A module of the chain, with what the scheduler sizes its steps by.
pub(crate) struct Stage<E: Element> {
    pub module: Box<dyn Module<E>>,
    /// Values per input frame.
    pub input: usize,
    /// Output values per input frame.
    pub output: usize,
    /// Frames the module takes in over the whole decode.
    pub frames_in: usize,
}

/// Hands the first module `n` input frames starting at `start`.
pub(crate) type Feed = Box<dyn FnMut(&Device, usize, usize) -> Result<Frames> + Send + 'static>;

/// One decode: call [`pull`](Pipeline::pull) until it returns `None`.
pub(crate) struct Pipeline<E: Element> {
    device: Device,
    stages: Vec<Stage<E>>,
    /// `queues[i]` feeds stage `i`; the last holds finished frames.
    queues: Vec<FrameQueue>,
    /// Frames per step of each stage.
    pieces: Vec<usize>,
    /// What `pieces` were sized for: the bytes a step may produce, the device's largest buffer.
    piece_bytes: usize,
    max_buffer: usize,
    feed: Feed,
    next_input: usize,
    /// Height, width and channels of an output frame.
    pub frame: (usize, usize, usize),
}

/// Frames per step of each stage: a step's largest buffer (its input, or its output with one
/// more frame from an end flush) within `piece_bytes` and within one device buffer, at least
/// one frame, and no more than the stage ever sees (which also keeps the plan to what is used).
fn step_frames<E: Element>(stages: &[Stage<E>], piece_bytes: usize, max_buffer: usize) -> Vec<usize> {
    stages
        .iter()
        .map(|s| {
            let per_frame = size_of::<E>() * s.input.max(s.output);
            let fit = |bytes: usize| (bytes / per_frame).saturating_sub(1);
            fit(piece_bytes).min(fit(max_buffer)).max(1).min(s.frames_in.max(1))
        })
        .collect()
}

impl<E: Element> Pipeline<E> {
    /// The chain `stages`, fed by `feed`, giving frames of `frame` (height, width, channels).
    pub fn new(device: &Device, stages: Vec<Stage<E>>, feed: Feed, frame: (usize, usize, usize), piece_bytes: usize) -> Result<Self> {
        // Even a one-frame step must fit one device buffer.
        let max_buffer = device.max_buffer_bytes() as usize;
        let size = size_of::<E>();
        let pieces = step_frames(&stages, piece_bytes, max_buffer);
        let mut queues = Vec::new();
        for (i, (stage, &piece)) in stages.iter().zip(&pieces).enumerate() {
            queues.push(FrameQueue::new(stage.input));
            if size * (piece + 1) * stage.output > max_buffer || size * stage.input > max_buffer {
                return Err(Error::Device(format!(
                    "decoder module {i} needs {:.1} MiB for its smallest step, over this device's \
                     {:.1} MiB buffer limit ({}): decode a smaller latent",
                    (size * stage.input.max(2 * stage.output)) as f64 / (1 << 20) as f64,
                    max_buffer as f64 / (1 << 20) as f64,
                    device.info().adapter
                )));
            }
        }
        queues.push(FrameQueue::new(frame.0 * frame.1 * frame.2));
        Ok(Self { device: device.clone(), stages, queues, pieces, piece_bytes, max_buffer, feed, next_input: 0, frame })
    }

    /// Device bytes this decode holds at most (besides the model's weights) while it hands
    /// out chunks of `chunk` frames: every module's carried state, the frames queued
    /// between modules (at most one step's output each, as the deepest module with work
    /// runs first), the temporaries of one step, and the output frames (in `E`, and as
    /// the f32 chunk handed on).
    pub fn planned_bytes(&self, chunk: usize) -> usize {
        let size = size_of::<E>();
        let (mut held, mut step) = (0usize, 0usize);
        for (stage, &piece) in self.stages.iter().zip(&self.pieces) {
            let (input, output) = (stage.input, stage.output);
            held += stage.module.state_len(piece, output) + (piece + 2) * output.max(input);
            // A step holds its input, the normalised input, two convolution outputs, the
            // residual taken and the output at once, at most.
            step = step.max(6 * (piece + 1) * input.max(output));
        }
        let frame = self.frame.0 * self.frame.1 * self.frame.2;
        size * (held + step + 2 * chunk * frame) + 4 * chunk * frame
    }

    /// Device bytes a step may produce.
    pub fn piece_bytes(&self) -> usize {
        self.piece_bytes
    }

    /// Halves the bytes a step may produce, before the first [`pull`](Self::pull); false
    /// (and nothing changed) when every module already steps one frame at a time.
    pub fn halve_steps(&mut self) -> bool {
        if self.pieces.iter().all(|&p| p == 1) {
            return false;
        }
        self.piece_bytes /= 2;
        self.pieces = step_frames(&self.stages, self.piece_bytes, self.max_buffer);
        true
    }

    /// The next `n` frames `[n, H, W, C]` in a buffer with room for `room` frames (fewer
    /// frames only at the end), or `None` when the video is complete.
    pub fn pull(&mut self, n: usize, room: usize) -> Result<Option<Frames>> {
        let out = self.queues.len() - 1;
        while self.queues[out].frames < n && !self.queues[out].end {
            self.step()?;
        }
        let queue = &mut self.queues[out];
        let frames = n.min(queue.frames);
        if frames == 0 {
            return Ok(None);
        }
        let buffer = queue.take_exact::<E>(&self.device, frames, room)?;
        Ok(Some(Frames { buffer, frames }))
    }

    /// Runs the deepest stage with work, or feeds input frames when none has any.
    fn step(&mut self) -> Result<()> {
        let last = self.stages.len();
        let Some(i) = (0..last).rev().find(|&i| self.queues[i].ready()) else {
            let total = self.stages[0].frames_in;
            assert!(self.next_input < total, "fed past the end of the input");
            let n = self.pieces[0].min(total - self.next_input);
            let frames = (self.feed)(&self.device, self.next_input, n)?;
            self.next_input += n;
            self.queues[0].push(frames);
            self.queues[0].end = self.next_input == total;
            return Ok(());
        };
        let (x, end) = self.queues[i].take::<E>(&self.device, self.pieces[i])?;
        let out = self.stages[i].module.push(&self.device, x, end)?;
        let next = &mut self.queues[i + 1];
        if let Some(out) = out {
            next.push(out);
        }
        next.end |= end;
        Ok(())
    }
}

/// A decode whose plan fits the device's memory budget: steps of half the bytes until it
/// does (or steps are single frames; then reserving says what is missing).
fn planned<E: Element>(mut pipeline: Pipeline<E>, request: &OpenRequest) -> Pipeline<E> {
    let Some(budget) = request.device().memory_budget() else {
        return pipeline;
    };
    let (chunk, asked) = (request.chunk_frames(), pipeline.piece_bytes());
    while pipeline.planned_bytes(chunk) as u64 > budget && pipeline.halve_steps() {}
    if pipeline.piece_bytes() < asked {
        request.emit(crate::EventKind::Info {
            message: format!(
                "decoder steps of {:.1} MiB instead of {:.1} MiB, to fit the device's memory budget",
                pipeline.piece_bytes() as f64 / 1048576.0,
                asked as f64 / 1048576.0
            ),
        });
    }
    pipeline
}

/// The frames of the decode `build` makes on the request's device, computed in `E` and
/// handed on as f32 chunks, the planned peak held from the device's memory budget.
pub(crate) fn decode_stream<E: Element>(
    request: OpenRequest,
    build: impl FnOnce(&Device) -> Result<Pipeline<E>> + Send + 'static,
) -> FrameStream {
    Box::pin(async_stream::try_stream! {
        let (device, chunk) = (request.device().clone(), request.chunk_frames());
        let mut pipeline = planned(build(&device)?, &request);
        // Held from the device's budget while the decode runs.
        let _memory = device.reserve(pipeline.planned_bytes(chunk) as u64).await?;
        let (h, w, c) = pipeline.frame;
        let mut start = 0u64;
        while let Some(frames) = pipeline.pull(chunk, chunk)? {
            let n = frames.frames;
            let buffer = if TypeId::of::<E>() == TypeId::of::<f32>() {
                frames.buffer
            } else {
                let out = device.alloc_frames(n, h * w * c, chunk)?;
                with_client!(device, client => {
                    crop::<_, E, f32>(client, &frames.buffer, (n, h, w, c), (0, 0), (h, w), &out)
                });
                out
            };
            yield Chunk::new(&device, buffer, [n, h, w, c], start)?;
            start += n as u64;
        }
    })
}
