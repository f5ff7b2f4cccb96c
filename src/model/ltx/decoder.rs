//! The LTX decoder's modules with their temporal state (convolution caches, residual FIFOs,
//! first-frame drop flags), chained on the shared streaming scheduler
//! ([`crate::model::streaming`]).

use std::sync::Arc;

use framestream_kernels::{DeviceBuffer, Element};
use framestream_kernels::conv::{ConvWeights, Padding, Strategy};
use framestream_kernels::elementwise::combine;
use framestream_kernels::layout::{depth_to_space_3d, unpatchify};
use framestream_kernels::noise::{add_plane, gaussian_plane, latent_input};
use framestream_kernels::norm::{layer_norm, pixel_norm};
use framestream_kernels::temporal::{Frames, TemporalConv3d, TimePadding};

use super::{BlockWeights, Latent, LtxVae, ResWeights};
use super::config::Block;
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::model::streaming::{FrameQueue, Level, Module, Pipeline, Stage, push_conv as push};

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

fn conv3d<E: Element>(weights: &ConvWeights, level: &Level, padding: Padding, causal: bool, strategy: Strategy) -> TemporalConv3d<E> {
    let time = if causal { TimePadding::CausalReplicate } else { TimePadding::Replicate };
    TemporalConv3d::new(weights.clone(), (level.height, level.width), padding, time, strategy)
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

impl<E: Element> Module<E> for ResModule<E> {
    /// Its convolutions' caches, noise planes, and the residual frames waiting for the body
    /// path (at most a step of `piece` frames and the two it lags, each `output` values).
    fn state_len(&self, piece: usize, output: usize) -> usize {
        let shortcut = self.shortcut.as_ref().map_or(0, |(_, _, c)| c.cache_len());
        let noise = if self.noise.is_some() { 2 * self.level.pixels() } else { 0 };
        self.conv1.cache_len() + self.conv2.cache_len() + shortcut + noise + (piece + 2) * output
    }

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

impl<E: Element> Module<E> for UpsampleModule<E> {
    fn state_len(&self, piece: usize, output: usize) -> usize {
        self.conv.cache_len() + if self.residual.is_some() { (piece + 2) * output } else { 0 }
    }

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

impl<E: Element> Module<E> for HeadModule<E> {
    fn state_len(&self, _piece: usize, _output: usize) -> usize {
        self.conv.cache_len()
    }

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

/// The id of an injected noise plane: (block, resblock, slot) above the channel ids of
/// the latent noise.
fn plane_id(block: usize, resblock: usize, slot: usize) -> u32 {
    0x8000_0000 | (block as u32) << 16 | (resblock as u32) << 1 | slot as u32
}

/// The decode of `latent` on `device`, computed in `E`.
pub(crate) fn pipeline<E: Element>(vae: &LtxVae, latent: Arc<Latent>, device: &Device, params: &DecodeParams) -> Result<Pipeline<E>> {
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
    let mut frames = latent.frames;
    let mut stages = vec![Stage {
        module: Box::new(conv3d::<E>(&weights.conv_in, &level, padding, causal, strategy)) as Box<dyn Module<E>>,
        input: level.pixels() * config.latent_channels,
        output: level.pixels() * config.width(),
        frames_in: frames,
    }];
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
                level: *level,
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
                    let module = Box::new(res_module(&level, w, channels, channels, j, inject_noise)?);
                    let len = level.pixels() * channels;
                    stages.push(Stage { module, input: len, output: len, frames_in: frames });
                }
            }
            (Block::Res { cin, cout }, BlockWeights::Res(w)) => {
                stages.push(Stage {
                    module: Box::new(res_module(&level, w, cin, cout, 0, false)?),
                    input: level.pixels() * cin,
                    output: level.pixels() * cout,
                    frames_in: frames,
                });
            }
            (Block::Upsample { cin, axes, reduction, residual }, BlockWeights::Upsample(w)) => {
                let out = cin / reduction;
                let stride = axes.stride();
                let next = Level { height: stride.1 * level.height, width: stride.2 * level.width };
                let temporal = stride.0 == 2;
                let module = Box::new(UpsampleModule {
                    level,
                    cin,
                    stride,
                    reduction,
                    conv: conv3d(w, &level, padding, causal, strategy),
                    drop_conv: temporal,
                    drop_residual: temporal,
                    residual: residual.then(|| FrameQueue::new(next.pixels() * out)),
                });
                // `stride.0` output frames per input frame.
                let output = stride.0 * next.pixels() * out;
                stages.push(Stage { module, input: level.pixels() * cin, output, frames_in: frames });
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
    stages.push(Stage {
        module: Box::new(HeadModule {
            level,
            channels,
            ada: ada.head.as_ref().map(upload_pair).transpose()?,
            conv: conv3d(&weights.conv_out, &level, padding, causal, strategy),
            patch: p,
            out_channels: oc,
        }),
        input: level.pixels() * channels,
        output: level.pixels() * p * p * oc,
        frames_in: frames,
    });
    let frame = (level.height * p, level.width * p, oc);
    let (seed, noise_scale) = (params.seed, if config.timestep_conditioning { params.noise_scale } else { 0.0 });
    // Mixes and un-normalizes latent frames `start..start + n` (the closure keeps the
    // statistics alive; the modules share the convolution weights).
    let feed = move |device: &Device, start: usize, n: usize| -> Result<Frames> {
        let frame_len = latent.height * latent.width * latent.channels;
        let input = device.upload_as::<E>(&latent.data[start * frame_len..(start + n) * frame_len])?;
        let out = device.alloc_as::<E>(n * frame_len, 0)?;
        let dims = (n, latent.height, latent.width, latent.channels);
        with_client!(device, client => {
            latent_input::<_, E>(client, &input, dims, (&weights.mean, &weights.std), (seed, start as u32, noise_scale), &out)
        });
        Ok(Frames { buffer: out, frames: n })
    };
    Pipeline::new(device, stages, Box::new(feed), frame, params.piece_bytes)
}
