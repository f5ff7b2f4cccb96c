//! The streaming decoder: per-module temporal state (convolution caches, residual FIFOs,
//! first-frame drop flags) and a depth-first scheduler, so a whole video never sits in
//! memory and any chunking gives the same frames as one whole-sequence decode.
//!
//! Each resblock, upsampler, conv_in and the head is a module with an input queue. A step
//! runs the deepest module with work on at most its piece size of frames (from a byte
//! budget), so the frames in flight are about one piece per level plus the carried state.

use std::collections::VecDeque;
use std::sync::Arc;

use framestream_kernels::{DeviceBuffer, Element};
use framestream_kernels::conv::{Activation, ConvWeights, Padding, Strategy};
use framestream_kernels::copy::copy;
use framestream_kernels::elementwise::combine;
use framestream_kernels::layout::{depth_to_space_3d, unpatchify};
use framestream_kernels::noise::{add_plane, gaussian_plane, latent_input};
use framestream_kernels::norm::{layer_norm, pixel_norm};
use framestream_kernels::temporal::{Frames, TemporalConv3d, TimePadding};

use super::{BlockWeights, DeviceWeights, Latent, LtxVae, ResWeights};
use super::config::Block;
use crate::device::{Device, with_client};
use crate::error::{Error, Result};

/// What a decode stream draws and how it is cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DecodeParams {
    pub seed: u64,
    /// Decode timestep (timestep-conditioned decoders).
    pub timestep: f32,
    /// Share of noise mixed into the latent (timestep-conditioned decoders).
    pub noise_scale: f32,
    /// Device bytes one module's step may produce.
    pub piece_bytes: usize,
}

/// Frames waiting between two modules, and whether the end of the stream follows them.
struct FrameQueue {
    frame_len: usize,
    /// Buffers and the first frame of each not yet taken.
    pieces: VecDeque<(Frames, usize)>,
    frames: usize,
    /// The end marker, until it is passed on.
    end: bool,
}

impl FrameQueue {
    fn new(frame_len: usize) -> Self {
        Self { frame_len, pieces: VecDeque::new(), frames: 0, end: false }
    }

    fn push(&mut self, frames: Frames) {
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
    fn take_exact<E: Element>(&mut self, device: &Device, n: usize, room: usize) -> Result<DeviceBuffer> {
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

struct Level {
    height: usize,
    width: usize,
}

impl Level {
    fn pixels(&self) -> usize {
        self.height * self.width
    }
}

fn conv3d<E: Element>(weights: &ConvWeights, level: &Level, padding: Padding, causal: bool, strategy: Strategy) -> TemporalConv3d<E> {
    let time = if causal { TimePadding::CausalReplicate } else { TimePadding::Replicate };
    TemporalConv3d::new(weights.clone(), (level.height, level.width), padding, time, strategy)
}

/// Runs a temporal convolution on the device's client.
fn push<E: Element>(
    device: &Device,
    conv: &mut TemporalConv3d<E>,
    x: Option<&Frames>,
    end: bool,
    residual: Option<&DeviceBuffer>,
) -> Option<Frames> {
    let (body, n) = x.map_or((None, 0), |f| (Some(&f.buffer), f.frames));
    with_client!(device, client => {
        conv.push(client, body, n, end, Activation::None, residual.map(|r| (r, 1.0)))
    })
}

/// `PixelNorm → (1+scale, shift) → SiLU` into a new buffer.
fn norm_act<E: Element>(device: &Device, x: &Frames, (pixels, channels): (usize, usize), ada: Option<&(DeviceBuffer, DeviceBuffer)>) -> Result<Frames> {
    let out = device.alloc_as::<E>(x.frames * pixels * channels, 0)?;
    with_client!(device, client => {
        pixel_norm::<_, E>(client, &x.buffer, (x.frames * pixels, channels), ada.map(|(s, b)| (s, b)), true, &out)
    });
    Ok(Frames { buffer: out, frames: x.frames })
}

struct ResModule<E: Element> {
    level: Level,
    cin: usize,
    cout: usize,
    conv1: TemporalConv3d<E>,
    conv2: TemporalConv3d<E>,
    /// LayerNorm weight and bias, and the 1×1×1 convolution.
    shortcut: Option<(DeviceBuffer, DeviceBuffer, TemporalConv3d<E>)>,
    ada: [Option<(DeviceBuffer, DeviceBuffer)>; 2],
    /// Noise planes and their per-channel scales, after conv1 and after conv2.
    noise: Option<[(DeviceBuffer, DeviceBuffer); 2]>,
    /// Shortcut frames waiting for their body output (the body lags two frames).
    skip: FrameQueue,
}

impl<E: Element> ResModule<E> {
    fn push(&mut self, device: &Device, x: Option<Frames>, end: bool) -> Result<Option<Frames>> {
        let pixels = self.level.pixels();
        let mut body = None;
        if let Some(x) = x {
            let skip = match &mut self.shortcut {
                Some((weight, bias, conv)) => {
                    let normed = device.alloc_as::<E>(x.frames * pixels * self.cin, 0)?;
                    with_client!(device, client => {
                        layer_norm::<_, E>(client, &x.buffer, (x.frames * pixels, self.cin), (weight, bias), 1e-6, &normed)
                    });
                    push(device, conv, Some(&Frames { buffer: normed, frames: x.frames }), false, None)
                        .expect("a 1×1×1 convolution emits every frame")
                }
                None => x.clone(),
            };
            self.skip.push(skip);
            body = Some(norm_act::<E>(device, &x, (pixels, self.cin), self.ada[0].as_ref())?);
        }
        let mut h = push(device, &mut self.conv1, body.as_ref(), end, None);
        drop(body);
        if let (Some(h), Some([(plane, scale), _])) = (&h, &self.noise) {
            with_client!(device, client => add_plane::<_, E>(client, &h.buffer, plane, scale));
        }
        if let Some(frames) = h.take() {
            h = Some(norm_act::<E>(device, &frames, (pixels, self.cout), self.ada[1].as_ref())?);
        }
        let n = self.conv2.output_frames(h.as_ref().map_or(0, |f| f.frames), end);
        let residual = if n > 0 { Some(self.skip.take_exact::<E>(device, n, n)?) } else { None };
        let out = push(device, &mut self.conv2, h.as_ref(), end, residual.as_ref());
        if let (Some(out), Some([_, (plane, scale)])) = (&out, &self.noise) {
            with_client!(device, client => add_plane::<_, E>(client, &out.buffer, plane, scale));
        }
        Ok(out)
    }
}

struct UpsampleModule<E: Element> {
    level: Level,
    cin: usize,
    /// (time, height, width).
    stride: (usize, usize, usize),
    reduction: usize,
    conv: TemporalConv3d<E>,
    /// A temporal upsampler drops the first frame of each path once (they reach frame 0 in
    /// different calls); a spatial one never drops.
    drop_conv: bool,
    drop_residual: bool,
    /// Shuffled input frames waiting for their convolution output; `None` without the
    /// residual path.
    residual: Option<FrameQueue>,
}

impl<E: Element> UpsampleModule<E> {
    fn push(&mut self, device: &Device, x: Option<Frames>, end: bool) -> Result<Option<Frames>> {
        let (h, w) = (self.level.height, self.level.width);
        let (st, sh, sw) = self.stride;
        let factor = st * sh * sw;
        let out_channels = self.cin / self.reduction;
        let out_frame = sh * h * sw * w * out_channels;
        if let (Some(x), Some(queue)) = (&x, &mut self.residual) {
            let frames = st * x.frames - usize::from(self.drop_residual);
            let r = device.alloc_as::<E>(frames * out_frame, 0)?;
            with_client!(device, client => {
                depth_to_space_3d::<_, E>(client, &x.buffer, (x.frames, h, w, self.cin), self.stride, factor / self.reduction, self.drop_residual, &r)
            });
            self.drop_residual = false;
            queue.push(Frames { buffer: r, frames });
        }
        let Some(y) = push(device, &mut self.conv, x.as_ref(), end, None) else {
            return Ok(None);
        };
        let frames = st * y.frames - usize::from(self.drop_conv);
        let u = device.alloc_as::<E>(frames * out_frame, 0)?;
        with_client!(device, client => {
            depth_to_space_3d::<_, E>(client, &y.buffer, (y.frames, h, w, factor * out_channels), self.stride, 1, self.drop_conv, &u)
        });
        self.drop_conv = false;
        if let Some(queue) = &mut self.residual {
            let r = queue.take_exact::<E>(device, frames, frames)?;
            with_client!(device, client => combine::<_, E>(client, &u, Some((&r, 1.0)), false, &u));
        }
        Ok(Some(Frames { buffer: u, frames }))
    }
}

struct HeadModule<E: Element> {
    level: Level,
    channels: usize,
    ada: Option<(DeviceBuffer, DeviceBuffer)>,
    conv: TemporalConv3d<E>,
    patch: usize,
    out_channels: usize,
}

impl<E: Element> HeadModule<E> {
    fn push(&mut self, device: &Device, x: Option<Frames>, end: bool) -> Result<Option<Frames>> {
        let pixels = self.level.pixels();
        let h = match x {
            Some(x) => Some(norm_act::<E>(device, &x, (pixels, self.channels), self.ada.as_ref())?),
            None => None,
        };
        let Some(y) = push(device, &mut self.conv, h.as_ref(), end, None) else {
            return Ok(None);
        };
        let p = self.patch;
        let out = device.alloc_as::<E>(y.frames * pixels * p * p * self.out_channels, 0)?;
        with_client!(device, client => {
            unpatchify::<_, E>(client, &y.buffer, (y.frames, self.level.height, self.level.width, self.out_channels), p, true, &out)
        });
        Ok(Some(Frames { buffer: out, frames: y.frames }))
    }
}

enum Module<E: Element> {
    ConvIn(TemporalConv3d<E>),
    Res(Box<ResModule<E>>),
    Upsample(Box<UpsampleModule<E>>),
    Head(Box<HeadModule<E>>),
}

impl<E: Element> Module<E> {
    /// Elements the module carries between steps at most, besides what it queues: its
    /// convolutions' caches, noise planes, and the residual frames waiting for the body
    /// path (at most a step of `piece` frames and the two it lags, each `output` values).
    fn state_len(&self, piece: usize, output: usize) -> usize {
        match self {
            Module::ConvIn(conv) => conv.cache_len(),
            Module::Res(m) => {
                let shortcut = m.shortcut.as_ref().map_or(0, |(_, _, c)| c.cache_len());
                let noise = if m.noise.is_some() { 2 * m.level.pixels() } else { 0 };
                m.conv1.cache_len() + m.conv2.cache_len() + shortcut + noise + (piece + 2) * output
            }
            Module::Upsample(m) => m.conv.cache_len() + if m.residual.is_some() { (piece + 2) * output } else { 0 },
            Module::Head(m) => m.conv.cache_len(),
        }
    }

    fn push(&mut self, device: &Device, x: Option<Frames>, end: bool) -> Result<Option<Frames>> {
        match self {
            Module::ConvIn(conv) => Ok(push(device, conv, x.as_ref(), end, None)),
            Module::Res(m) => m.push(device, x, end),
            Module::Upsample(m) => m.push(device, x, end),
            Module::Head(m) => m.push(device, x, end),
        }
    }
}

/// One decode of one latent: call [`pull`](Decoder::pull) until it returns `None`.
pub(crate) struct Decoder<E: Element> {
    device: Device,
    /// Keeps the statistics alive (the modules share the convolution weights).
    weights: Arc<DeviceWeights>,
    modules: Vec<Module<E>>,
    /// `queues[i]` feeds module `i`; the last holds finished pixel frames.
    queues: Vec<FrameQueue>,
    /// Frames per step of each module.
    pieces: Vec<usize>,
    /// Values per input frame, and output values per input frame, of each module.
    frame_lens: Vec<(usize, usize)>,
    /// Frames each module takes in over the whole decode.
    frames_in: Vec<usize>,
    /// What `pieces` were sized for: the bytes a step may produce, the device's largest buffer.
    piece_bytes: usize,
    max_buffer: usize,
    latent: Arc<Latent>,
    next_latent: usize,
    seed: u64,
    noise_scale: f32,
    /// Height, width and channels of a pixel frame.
    pub frame: (usize, usize, usize),
}

/// Frames per step of each module (`frame_lens`: values per input frame and output values per
/// input frame): a step's largest buffer (its input, or its output with one more frame from
/// the end flush) within `piece_bytes` and within one device buffer, at least one frame, and
/// no more than the module ever sees (which also keeps the plan to what is used).
fn step_frames<E: Element>(frame_lens: &[(usize, usize)], frames_in: &[usize], piece_bytes: usize, max_buffer: usize) -> Vec<usize> {
    frame_lens
        .iter()
        .zip(frames_in)
        .map(|(&(input, output), &frames)| {
            let per_frame = size_of::<E>() * input.max(output);
            let fit = |bytes: usize| (bytes / per_frame).saturating_sub(1);
            fit(piece_bytes).min(fit(max_buffer)).max(1).min(frames.max(1))
        })
        .collect()
}

/// The id of an injected noise plane: (block, resblock, slot) above the channel ids of
/// the latent noise.
fn plane_id(block: usize, resblock: usize, slot: usize) -> u32 {
    0x8000_0000 | (block as u32) << 16 | (resblock as u32) << 1 | slot as u32
}

impl<E: Element> Decoder<E> {
    pub fn new(vae: &LtxVae, latent: Arc<Latent>, device: &Device, params: &DecodeParams) -> Result<Self> {
        let config = vae.config();
        let weights = vae.on::<E>(device)?;
        let ada = vae.ada(params.timestep)?;
        let upload_pair = |p: &(Vec<f32>, Vec<f32>)| -> Result<(DeviceBuffer, DeviceBuffer)> {
            Ok((device.upload_as::<E>(&p.0)?, device.upload_as::<E>(&p.1)?))
        };
        let (padding, causal, strategy) = (vae.padding(), config.causal, weights.strategy);
        let mut level = Level { height: latent.height, width: latent.width };
        if padding == Padding::Reflect && (level.height < 2 || level.width < 2) {
            return Err(Error::shape(format!(
                "a {}x{} latent is too small for reflection padding (sides ≥ 2); decode with zeros \
                 or replicate padding",
                level.width, level.height
            )));
        }
        let mut modules = vec![Module::ConvIn(conv3d(&weights.conv_in, &level, padding, causal, strategy))];
        // Values per input frame, and output values per input frame, of each module.
        let mut frame_lens = vec![(level.pixels() * config.latent_channels, level.pixels() * config.width())];
        // Frames each module takes in over the whole decode.
        let mut frames = latent.frames;
        let mut frames_in = vec![frames];
        for (i, (block, block_weights)) in config.blocks.iter().zip(&weights.blocks).enumerate() {
            let res_module = |level: &Level, w: &ResWeights, cin: usize, cout: usize, j: usize, noise: bool| -> Result<ResModule<E>> {
                let ada = match ada.blocks.get(i).and_then(|b| b.get(j)) {
                    Some([a, b]) if !matches!(block, Block::Res { .. }) => [Some(upload_pair(a)?), Some(upload_pair(b)?)],
                    _ => [None, None],
                };
                let noise = match (&w.noise_scales, noise) {
                    (Some((s1, s2)), true) => {
                        let plane = |slot| -> Result<DeviceBuffer> {
                            let out = device.alloc_as::<E>(level.pixels(), 0)?;
                            with_client!(device, client => {
                                gaussian_plane::<_, E>(client, params.seed, plane_id(i, j, slot), (level.height, level.width), &out)
                            });
                            Ok(out)
                        };
                        Some([(plane(0)?, s1.clone()), (plane(1)?, s2.clone())])
                    }
                    _ => None,
                };
                let shortcut = w.shortcut.as_ref().map(|s| {
                    (s.norm_weight.clone(), s.norm_bias.clone(), conv3d(&s.conv, level, padding, causal, strategy))
                });
                Ok(ResModule {
                    level: Level { ..*level },
                    cin,
                    cout,
                    conv1: conv3d(&w.conv1, level, padding, causal, strategy),
                    conv2: conv3d(&w.conv2, level, padding, causal, strategy),
                    shortcut,
                    ada,
                    noise,
                    skip: FrameQueue::new(level.pixels() * cout),
                })
            };
            match (*block, block_weights) {
                (Block::Mid { channels, inject_noise, .. }, BlockWeights::Mid(res)) => {
                    for (j, w) in res.iter().enumerate() {
                        modules.push(Module::Res(Box::new(res_module(&level, w, channels, channels, j, inject_noise)?)));
                        frame_lens.push((level.pixels() * channels, level.pixels() * channels));
                        frames_in.push(frames);
                    }
                }
                (Block::Res { cin, cout }, BlockWeights::Res(w)) => {
                    modules.push(Module::Res(Box::new(res_module(&level, w, cin, cout, 0, false)?)));
                    frame_lens.push((level.pixels() * cin, level.pixels() * cout));
                    frames_in.push(frames);
                }
                (Block::Upsample { cin, axes, reduction, residual }, BlockWeights::Upsample(w)) => {
                    let out = cin / reduction;
                    let stride = axes.stride();
                    let next = Level { height: stride.1 * level.height, width: stride.2 * level.width };
                    let temporal = stride.0 == 2;
                    modules.push(Module::Upsample(Box::new(UpsampleModule {
                        level: Level { ..level },
                        cin,
                        stride,
                        reduction,
                        conv: conv3d(w, &level, padding, causal, strategy),
                        drop_conv: temporal,
                        drop_residual: temporal,
                        residual: residual.then(|| FrameQueue::new(next.pixels() * out)),
                    })));
                    // `stride.0` output frames per input frame.
                    frame_lens.push((level.pixels() * cin, stride.0 * next.pixels() * out));
                    frames_in.push(frames);
                    if temporal {
                        frames = (2 * frames).saturating_sub(1);
                    }
                    level = next;
                }
                _ => unreachable!("weights are uploaded from the config"),
            }
        }
        let (p, oc) = (config.patch_size, config.out_channels);
        let channels = config.head_channels();
        modules.push(Module::Head(Box::new(HeadModule {
            level: Level { ..level },
            channels,
            ada: ada.head.as_ref().map(upload_pair).transpose()?,
            conv: conv3d(&weights.conv_out, &level, padding, causal, strategy),
            patch: p,
            out_channels: oc,
        })));
        frame_lens.push((level.pixels() * channels, level.pixels() * p * p * oc));
        frames_in.push(frames);
        let frame = (level.height * p, level.width * p, oc);

        // Even a one-frame step must fit one device buffer.
        let max_buffer = device.max_buffer_bytes() as usize;
        let size = size_of::<E>();
        let pieces = step_frames::<E>(&frame_lens, &frames_in, params.piece_bytes, max_buffer);
        let mut queues = Vec::new();
        for (i, (&(input, output), &piece)) in frame_lens.iter().zip(&pieces).enumerate() {
            queues.push(FrameQueue::new(input));
            if size * (piece + 1) * output > max_buffer || size * input > max_buffer {
                return Err(Error::Device(format!(
                    "decoder module {i} needs {:.1} MiB for its smallest step, over this device's \
                     {:.1} MiB buffer limit ({}): decode a smaller latent",
                    (size * input.max(2 * output)) as f64 / (1 << 20) as f64,
                    max_buffer as f64 / (1 << 20) as f64,
                    device.info().adapter
                )));
            }
        }
        queues.push(FrameQueue::new(frame.0 * frame.1 * frame.2));
        let noise_scale = if config.timestep_conditioning { params.noise_scale } else { 0.0 };
        Ok(Self {
            device: device.clone(),
            weights,
            modules,
            queues,
            pieces,
            frame_lens,
            frames_in,
            piece_bytes: params.piece_bytes,
            max_buffer,
            latent,
            next_latent: 0,
            seed: params.seed,
            noise_scale,
            frame,
        })
    }

    /// Device bytes this decode holds at most (besides the model's weights) while it hands
    /// out chunks of `chunk` frames: every module's carried state, the frames queued
    /// between modules (at most one step's output each, as the deepest module with work
    /// runs first), the temporaries of one step, and the output frames (in `E`, and as
    /// the f32 chunk handed on).
    pub fn planned_bytes(&self, chunk: usize) -> usize {
        let size = size_of::<E>();
        let steps = self.modules.iter().zip(&self.pieces).zip(&self.frame_lens);
        let (mut held, mut step) = (0usize, 0usize);
        for ((module, &piece), &(input, output)) in steps {
            held += module.state_len(piece, output) + (piece + 2) * output.max(input);
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
        self.pieces = step_frames::<E>(&self.frame_lens, &self.frames_in, self.piece_bytes, self.max_buffer);
        true
    }

    /// The next `n` pixel frames `[n, H, W, C]` in a buffer with room for `room` frames
    /// (fewer frames only at the end), or `None` when the video is complete.
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

    /// Runs the deepest module with work, or feeds latent frames when none has any.
    fn step(&mut self) -> Result<()> {
        let last = self.modules.len();
        let Some(i) = (0..last).rev().find(|&i| self.queues[i].ready()) else {
            return self.feed();
        };
        let (x, end) = self.queues[i].take::<E>(&self.device, self.pieces[i])?;
        let out = self.modules[i].push(&self.device, x, end)?;
        let next = &mut self.queues[i + 1];
        if let Some(out) = out {
            next.push(out);
        }
        next.end |= end;
        Ok(())
    }

    /// Mixes and un-normalizes the next latent frames into conv_in's queue.
    fn feed(&mut self) -> Result<()> {
        let latent = &self.latent;
        let total = latent.frames;
        assert!(self.next_latent < total, "fed past the end of the latent");
        let n = self.pieces[0].min(total - self.next_latent);
        let frame_len = latent.height * latent.width * latent.channels;
        let start = self.next_latent;
        let input = self.device.upload_as::<E>(&latent.data[start * frame_len..(start + n) * frame_len])?;
        let out = self.device.alloc_as::<E>(n * frame_len, 0)?;
        let dims = (n, latent.height, latent.width, latent.channels);
        let (seed, s) = (self.seed, self.noise_scale);
        let (mean, std) = (&self.weights.mean, &self.weights.std);
        with_client!(self.device, client => {
            latent_input::<_, E>(client, &input, dims, (mean, std), (seed, start as u32, s), &out)
        });
        self.next_latent += n;
        self.queues[0].push(Frames { buffer: out, frames: n });
        self.queues[0].end = self.next_latent == total;
        Ok(())
    }
}
