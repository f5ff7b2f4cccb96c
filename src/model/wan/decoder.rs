//! The Wan decoder's modules with their temporal state, chained on the shared streaming
//! scheduler ([`crate::model::streaming`]). Every cached convolution is causal with two zero
//! frames of history and no end flush, so a module returns its output as soon as it has its
//! input: no lag, and the end of the stream changes nothing (WAN_VAE.md §4.2). The two
//! first-frame cases — the time upsampler's bypass of frame 0 and `DupUp3D`'s drop — are
//! keyed by the first push, which holds the level's frame 0.

use std::sync::{Arc, Mutex};

use framestream_kernels::conv::{ConvWeights, Padding, Strategy};
use framestream_kernels::copy::copy;
use framestream_kernels::layout::{nearest, repeat_depth_to_space_3d, split_time_blocks, unpatchify};
use framestream_kernels::norm::rms_norm;
use framestream_kernels::attention::attention;
use framestream_kernels::temporal::{Frames, TemporalConv3d, TimePadding};
use framestream_kernels::{DeviceBuffer, Element};

use super::{ResWeights, WanVae};
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::model::Latent;
use crate::model::streaming::{FrameQueue, Level, Module, Pipeline, Stage, push_conv};

fn conv3d<E: Element>(weights: &ConvWeights, level: Level, strategy: Strategy) -> TemporalConv3d<E> {
    TemporalConv3d::new(weights.clone(), (level.height, level.width), Padding::Zeros, TimePadding::CausalZeros, strategy)
}

/// A convolution's output for `x`, a frame for every frame: Wan's convolutions are causal
/// (their history is cached) or one frame deep.
fn conv_frames<E: Element>(device: &Device, conv: &mut TemporalConv3d<E>, x: &Frames, residual: Option<&DeviceBuffer>) -> Frames {
    push_conv(device, conv, Some(x), false, residual).expect("a convolution of frames emits every frame")
}

/// `RMS(x)·γ`, then SiLU when asked, into a new buffer.
fn rms<E: Element>(device: &Device, x: &Frames, (pixels, channels): (usize, usize), gain: &DeviceBuffer, silu: bool) -> Result<Frames> {
    let out = device.alloc_as::<E>(x.frames * pixels * channels, 0)?;
    with_client!(device, client => rms_norm::<_, E>(client, &x.buffer, (x.frames * pixels, channels), gain, silu, &out));
    Ok(Frames { buffer: out, frames: x.frames })
}

struct ResModule<E: Element> {
    level: Level,
    cin: usize,
    cout: usize,
    gains: [DeviceBuffer; 2],
    conv1: TemporalConv3d<E>,
    conv2: TemporalConv3d<E>,
    shortcut: Option<TemporalConv3d<E>>,
}

impl<E: Element> ResModule<E> {
    fn new(w: &ResWeights, level: Level, (cin, cout): (usize, usize), strategy: Strategy) -> Self {
        Self {
            level,
            cin,
            cout,
            gains: [w.gain1.clone(), w.gain2.clone()],
            conv1: conv3d(&w.conv1, level, strategy),
            conv2: conv3d(&w.conv2, level, strategy),
            shortcut: w.shortcut.as_ref().map(|s| conv3d(s, level, strategy)),
        }
    }
}

impl<E: Element> Module<E> for ResModule<E> {
    fn state_len(&self, _piece: usize, _output: usize) -> usize {
        self.conv1.cache_len() + self.conv2.cache_len()
    }

    /// `conv2(SiLU(RMS(conv1(SiLU(RMS(x)))))) + shortcut(x)`.
    fn push(&mut self, device: &Device, x: Option<Frames>, _end: bool) -> Result<Option<Frames>> {
        let Some(x) = x else { return Ok(None) };
        let pixels = self.level.pixels();
        let skip = match &mut self.shortcut {
            Some(conv) => conv_frames(device, conv, &x, None),
            None => x.clone(),
        };
        let h = rms::<E>(device, &x, (pixels, self.cin), &self.gains[0], true)?;
        drop(x);
        let h = conv_frames(device, &mut self.conv1, &h, None);
        let h = rms::<E>(device, &h, (pixels, self.cout), &self.gains[1], true)?;
        Ok(Some(conv_frames(device, &mut self.conv2, &h, Some(&skip.buffer))))
    }
}

/// Single-head self-attention within each frame, with a residual.
struct AttentionModule<E: Element> {
    level: Level,
    channels: usize,
    gain: DeviceBuffer,
    qkv: TemporalConv3d<E>,
    proj: TemporalConv3d<E>,
}

impl<E: Element> Module<E> for AttentionModule<E> {
    fn state_len(&self, _piece: usize, _output: usize) -> usize {
        0
    }

    /// `x + proj(attention(to_qkv(RMS(x))))`.
    fn push(&mut self, device: &Device, x: Option<Frames>, _end: bool) -> Result<Option<Frames>> {
        let Some(x) = x else { return Ok(None) };
        let (pixels, c) = (self.level.pixels(), self.channels);
        let normed = rms::<E>(device, &x, (pixels, c), &self.gain, false)?;
        let qkv = conv_frames(device, &mut self.qkv, &normed, None);
        drop(normed);
        let mixed = device.alloc_as::<E>(x.frames * pixels * c, 0)?;
        with_client!(device, client => attention::<_, E>(client, &qkv.buffer, (x.frames, pixels, c), &mixed));
        drop(qkv);
        let mixed = Frames { buffer: mixed, frames: x.frames };
        Ok(Some(conv_frames(device, &mut self.proj, &mixed, Some(&x.buffer))))
    }
}

/// Wan 2.2's `DupUp3D`: passes the up block's input on and queues its shortcut for the
/// block's upsampler, which adds it.
struct ShortcutTap {
    level: Level,
    cin: usize,
    cout: usize,
    /// Time stride: 2 when the block upsamples time.
    st: usize,
    queue: Arc<Mutex<FrameQueue>>,
    first: bool,
}

impl<E: Element> Module<E> for ShortcutTap {
    /// The shortcut frames waiting for the block's output: at most a step's worth and one more.
    fn state_len(&self, piece: usize, _output: usize) -> usize {
        (piece + 1) * self.st * self.level.doubled().pixels() * self.cout
    }

    fn push(&mut self, device: &Device, x: Option<Frames>, _end: bool) -> Result<Option<Frames>> {
        let Some(x) = x else { return Ok(None) };
        let (h, w) = (self.level.height, self.level.width);
        let drop_first = self.first && self.st == 2;
        let frames = self.st * x.frames - usize::from(drop_first);
        let out = device.alloc_as::<E>(frames * self.level.doubled().pixels() * self.cout, 0)?;
        with_client!(device, client => {
            repeat_depth_to_space_3d::<_, E>(client, &x.buffer, (x.frames, h, w, self.cin), (self.st, 2, 2), self.cout, drop_first, &out)
        });
        self.first = false;
        self.queue.lock().expect("shortcut queue").push(Frames { buffer: out, frames });
        Ok(Some(x))
    }
}

/// An upsampler: the time convolution C→2C split into two frames (frame 0 of the level
/// bypasses it), then nearest ×2 and a 3×3 convolution on every frame.
struct ResampleModule<E: Element> {
    level: Level,
    cin: usize,
    time_conv: Option<TemporalConv3d<E>>,
    conv: TemporalConv3d<E>,
    /// Wan 2.2's block shortcut, added to the output.
    shortcut: Option<Arc<Mutex<FrameQueue>>>,
    first: bool,
}

impl<E: Element> ResampleModule<E> {
    /// The time upsampling of `x`: `2n` frames, or `2n − 1` when `x` starts with frame 0.
    fn upsample_time(&mut self, device: &Device, x: Frames) -> Result<Frames> {
        let Some(time_conv) = &mut self.time_conv else { return Ok(x) };
        let frame_len = self.level.pixels() * self.cin;
        let bypass = usize::from(self.first);
        let rest = x.frames - bypass;
        if rest == 0 {
            return Ok(x);
        }
        let input = if bypass == 0 {
            x.clone()
        } else {
            let buffer = device.alloc_as::<E>(rest * frame_len, 0)?;
            with_client!(device, client => copy::<_, E>(client, &x.buffer, frame_len, &buffer, 0, rest * frame_len));
            Frames { buffer, frames: rest }
        };
        let y = push_conv(device, time_conv, Some(&input), false, None).expect("a causal convolution emits every frame");
        drop(input);
        let frames = bypass + 2 * rest;
        let out = device.alloc_as::<E>(frames * frame_len, 0)?;
        let (h, w) = (self.level.height, self.level.width);
        if bypass == 0 {
            with_client!(device, client => split_time_blocks::<_, E>(client, &y.buffer, (rest, h, w, 2 * self.cin), &out));
        } else {
            let split = device.alloc_as::<E>(2 * rest * frame_len, 0)?;
            with_client!(device, client => {
                split_time_blocks::<_, E>(client, &y.buffer, (rest, h, w, 2 * self.cin), &split);
                copy::<_, E>(client, &x.buffer, 0, &out, 0, frame_len);
                copy::<_, E>(client, &split, 0, &out, frame_len, 2 * rest * frame_len)
            });
        }
        Ok(Frames { buffer: out, frames })
    }
}

impl<E: Element> Module<E> for ResampleModule<E> {
    fn state_len(&self, _piece: usize, _output: usize) -> usize {
        self.time_conv.as_ref().map_or(0, |c| c.cache_len())
    }

    fn push(&mut self, device: &Device, x: Option<Frames>, _end: bool) -> Result<Option<Frames>> {
        let Some(x) = x else { return Ok(None) };
        let t = self.upsample_time(device, x)?;
        self.first = false;
        let (h, w) = (self.level.height, self.level.width);
        let up = device.alloc_as::<E>(t.frames * 4 * h * w * self.cin, 0)?;
        with_client!(device, client => nearest::<_, E>(client, &t.buffer, (t.frames, h, w, self.cin), 2, &up));
        drop(t.buffer);
        let up = Frames { buffer: up, frames: t.frames };
        let residual = match &self.shortcut {
            Some(queue) => Some(queue.lock().expect("shortcut queue").take_exact::<E>(device, up.frames, up.frames)?),
            None => None,
        };
        Ok(Some(conv_frames(device, &mut self.conv, &up, residual.as_ref())))
    }
}

/// `RMS·γ`, SiLU, the causal 3×3×3 convolution to 3·p² channels, unpatchify, `[−1, 1] → [0, 1]`.
struct HeadModule<E: Element> {
    level: Level,
    channels: usize,
    gain: DeviceBuffer,
    conv: TemporalConv3d<E>,
    patch: usize,
}

impl<E: Element> Module<E> for HeadModule<E> {
    fn state_len(&self, _piece: usize, _output: usize) -> usize {
        self.conv.cache_len()
    }

    fn push(&mut self, device: &Device, x: Option<Frames>, _end: bool) -> Result<Option<Frames>> {
        let Some(x) = x else { return Ok(None) };
        let pixels = self.level.pixels();
        let h = rms::<E>(device, &x, (pixels, self.channels), &self.gain, true)?;
        drop(x);
        let y = conv_frames(device, &mut self.conv, &h, None);
        let p = self.patch;
        let out = device.alloc_as::<E>(y.frames * pixels * p * p * 3, 0)?;
        with_client!(device, client => {
            unpatchify::<_, E>(client, &y.buffer, (y.frames, self.level.height, self.level.width, 3), p, true, &out)
        });
        Ok(Some(Frames { buffer: out, frames: y.frames }))
    }
}

/// The decode of `latent` (VAE space) on `device`, computed in `E`, in steps of at most
/// `piece_bytes`.
pub(crate) fn pipeline<E: Element>(vae: &WanVae, latent: Arc<Latent>, device: &Device, piece_bytes: usize) -> Result<Pipeline<E>> {
    let config = vae.config();
    if latent.channels != config.latent_channels {
        return Err(Error::shape(format!(
            "a latent of {} channels for a VAE that decodes {}",
            latent.channels, config.latent_channels
        )));
    }
    let weights = vae.on::<E>(device)?;
    let strategy = weights.strategy;
    let mut level = Level { height: latent.height, width: latent.width };
    let (z, width) = (config.latent_channels, config.width);
    let mut frames = latent.frames;
    let mut stages: Vec<Stage<E>> = Vec::new();
    let mut add = |module: Box<dyn Module<E>>, input: usize, output: usize, frames_in: usize| {
        stages.push(Stage { module, input, output, frames_in });
    };
    let px = level.pixels();
    add(Box::new(conv3d::<E>(&weights.conv2, level, strategy)), px * z, px * z, frames);
    add(Box::new(conv3d::<E>(&weights.conv1, level, strategy)), px * z, px * width, frames);
    let len = px * width;
    add(Box::new(ResModule::<E>::new(&weights.middle[0], level, (width, width), strategy)), len, len, frames);
    let attention = AttentionModule {
        level,
        channels: width,
        gain: weights.attention.gain.clone(),
        qkv: conv3d(&weights.attention.qkv, level, strategy),
        proj: conv3d(&weights.attention.proj, level, strategy),
    };
    // A stage's `output` sizes its steps: its largest buffer per input frame (here q, k, v).
    add(Box::new(attention), len, 3 * len, frames);
    add(Box::new(ResModule::<E>::new(&weights.middle[1], level, (width, width), strategy)), len, len, frames);
    for (block, w) in config.blocks.iter().zip(&weights.blocks) {
        let time = block.resample.as_ref().is_some_and(|r| r.time);
        let st = if time { 2 } else { 1 };
        let queue = block.shortcut.then(|| Arc::new(Mutex::new(FrameQueue::new(level.doubled().pixels() * block.cout()))));
        if let Some(queue) = &queue {
            let tap = ShortcutTap { level, cin: block.cin(), cout: block.cout(), st, queue: queue.clone(), first: true };
            let len = level.pixels() * block.cin();
            add(Box::new(tap), len, len.max(st * level.doubled().pixels() * block.cout()), frames);
        }
        for (r, rw) in block.res.iter().zip(&w.res) {
            let module = ResModule::<E>::new(rw, level, (r.cin, r.cout), strategy);
            add(Box::new(module), level.pixels() * r.cin, level.pixels() * r.cout, frames);
        }
        if let (Some(r), Some(rw)) = (&block.resample, &w.resample) {
            let next = level.doubled();
            let module = ResampleModule {
                level,
                cin: r.cin,
                time_conv: rw.time_conv.as_ref().map(|c| conv3d(c, level, strategy)),
                conv: conv3d(&rw.conv, next, strategy),
                shortcut: queue,
                first: true,
            };
            // Its largest buffer: the nearest ×2 frames (cin channels) or the output.
            add(Box::new(module), level.pixels() * r.cin, st * next.pixels() * r.cin.max(r.cout), frames);
            if time {
                frames = (2 * frames).saturating_sub(1);
            }
            level = next;
        }
    }
    let (p, h) = (config.patch_size, config.head_channels);
    let head = HeadModule { level, channels: h, gain: weights.head_gain.clone(), conv: conv3d(&weights.head, level, strategy), patch: p };
    add(Box::new(head), level.pixels() * h, level.pixels() * 3 * p * p, frames);
    let frame = (level.height * p, level.width * p, 3);
    // Uploads latent frames `start..start + n` (the modules hold their weights' buffers).
    let feed = move |device: &Device, start: usize, n: usize| -> Result<Frames> {
        let frame_len = latent.height * latent.width * latent.channels;
        let buffer = device.upload_as::<E>(&latent.data[start * frame_len..(start + n) * frame_len])?;
        Ok(Frames { buffer, frames: n })
    };
    Pipeline::new(device, stages, Box::new(feed), frame, piece_bytes)
}
