//! `Upscale`: model upscaling (ESRGAN family) chunk by chunk on the device, whole frames or
//! tiled with feathered or halo blending; or classical resampling.

use std::sync::Arc;

use framestream_kernels::DeviceBuffer;
use framestream_kernels::conv::{Activation, ConvWeights, Strategy};
use framestream_kernels::elementwise::{combine, fill};
use framestream_kernels::layout::{copy_channels, reflect_pad};
use framestream_kernels::resize::{Filter, ResizePlan, resize};
use framestream_kernels::tile::{blend, crop, normalize};
use futures::StreamExt;

use crate::chunk::Chunk;
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::model::Precision;
use crate::model::esrgan::{DeviceModel, UpscaleModel, conv2d, Planes};
use crate::model::tiling::{self, TilePlan};
use crate::progress::EventKind;
use crate::stage::Resize;
use crate::stream::{FrameStream, OpenRequest, Stage, StreamInfo};

/// How tiles are blended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blend {
    /// ComfyUI's `tiled_scale`: fixed tile placement, outputs cross-faded over the overlap.
    Feather,
    /// Abutting cores read with a margin of context that is cropped away (feathered over a
    /// few pixels so the weights sum to 1); exact when the margin ≥ the model's receptive
    /// radius.
    Halo,
}

impl std::str::FromStr for Blend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "feather" => Ok(Blend::Feather),
            "halo" => Ok(Blend::Halo),
            other => Err(Error::config(format!("unknown blend `{other}` (feather or halo)"))),
        }
    }
}

/// The tiling settings of a model upscale.
#[derive(Clone, Debug, PartialEq)]
struct Tiling {
    /// Tile side in input pixels; `None`: whole frames while they fit, else 512.
    tile: Option<usize>,
    /// Feather overlap (input pixels).
    overlap: usize,
    blend: Blend,
    /// Halo context (input pixels); `None`: the model's receptive radius, at most 32.
    margin: Option<usize>,
    /// Halo feather width (input pixels).
    halo_feather: usize,
    /// Device bytes a chunk's upscale may hold.
    budget: usize,
    /// What the model computes in.
    precision: Precision,
}

#[derive(Clone, Debug)]
enum Kind {
    Model(UpscaleModel, Tiling),
    Resample(Resize),
}

/// Upscales every frame, by a model or by resampling. Output values are clamped to [0, 1];
/// frames stay on the device.
#[derive(Clone, Debug)]
pub struct Upscale {
    kind: Kind,
}

/// Smallest tile the memory fallback goes down to.
const MIN_TILE: usize = 128;
const DEFAULT_TILE: usize = 512;

impl Upscale {
    /// By `model`, with whole frames while they fit in the memory budget (else tiles of 512
    /// with halo blending).
    pub fn model(model: UpscaleModel) -> Self {
        let tiling = Tiling {
            tile: None,
            overlap: 32,
            blend: Blend::Halo,
            margin: None,
            halo_feather: 16,
            budget: 4 << 30,
            precision: Precision::F32,
        };
        Self { kind: Kind::Model(model, tiling) }
    }

    /// Classical resampling by `factor`.
    pub fn resample(factor: f64, filter: Filter) -> Self {
        Self { kind: Kind::Resample(Resize::scale(factor, filter)) }
    }

    fn tiling(mut self, f: impl FnOnce(&mut Tiling)) -> Self {
        if let Kind::Model(_, t) = &mut self.kind {
            f(t);
        }
        self
    }

    /// Tiles of `tile` input pixels; `overlap` is the feather overlap (ComfyUI: 512, 32).
    pub fn tile(self, tile: usize, overlap: usize) -> Self {
        self.tiling(|t| {
            t.tile = Some(tile);
            t.overlap = overlap;
        })
    }

    pub fn blend(self, blend: Blend) -> Self {
        self.tiling(|t| t.blend = blend)
    }

    /// Halo context and feather widths (input pixels).
    pub fn halo(self, margin: usize, feather: usize) -> Self {
        self.tiling(|t| {
            t.margin = Some(margin);
            t.halo_feather = feather;
        })
    }

    /// Device bytes one chunk's upscale may hold (default 4 GiB); tiles shrink to fit.
    pub fn memory_budget(self, bytes: usize) -> Self {
        self.tiling(|t| t.budget = bytes)
    }

    /// The element type the model computes in (f32 by default): f16 and bf16 halve its
    /// memory where the device has them; frames enter and leave as f32.
    pub fn precision(self, precision: Precision) -> Self {
        self.tiling(|t| t.precision = precision)
    }
}

/// How the input channels meet the model's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channels {
    /// As they are.
    Same,
    /// RGBA into an RGB model: the alpha is resized bilinearly beside it.
    SplitAlpha,
    /// Grey into an RGB model: replicated in, BT.601 luma out.
    GreyThroughRgb,
    /// RGB into a grey model: luma in, replicated out.
    RgbThroughGrey,
}

fn channels(model: &UpscaleModel, c: usize) -> Result<Channels> {
    match (c, model.in_channels(), model.out_channels()) {
        (c, i, o) if c == i && i == o => Ok(Channels::Same),
        (4, 3, 3) => Ok(Channels::SplitAlpha),
        (1, 3, 3) => Ok(Channels::GreyThroughRgb),
        (3, 1, 1) => Ok(Channels::RgbThroughGrey),
        (c, i, o) => Err(Error::shape(format!(
            "{c}-channel frames through a model of {i} input and {o} output channels"
        ))),
    }
}

impl Stage for Upscale {
    fn name(&self) -> String {
        "upscale".into()
    }

    fn info(&self, upstream: &StreamInfo) -> Result<StreamInfo> {
        match &self.kind {
            Kind::Resample(r) => r.info(upstream),
            Kind::Model(model, tiling) => {
                channels(model, upstream.channels)?;
                if let Some(t) = tiling.tile && (t < 4 || t <= 2 * tiling.overlap) {
                    return Err(Error::config(format!(
                        "tile {t} with overlap {}: tiles need more than twice the overlap \
                         and at least 4 pixels",
                        tiling.overlap
                    )));
                }
                let s = model.scale();
                Ok(StreamInfo { width: upstream.width * s, height: upstream.height * s, ..upstream.clone() })
            }
        }
    }

    fn apply(&self, upstream: FrameStream, info: &StreamInfo, request: &OpenRequest) -> FrameStream {
        let (model, tiling) = match &self.kind {
            Kind::Resample(r) => return r.apply(upstream, info, request),
            Kind::Model(m, t) => (m.clone(), t.clone()),
        };
        let (info, request) = (info.clone(), request.clone());
        let mut upstream = upstream;
        Box::pin(async_stream::try_stream! {
            let device = request.device().clone();
            let runner = Runner::new(&model, &tiling, &info, &request)?;
            let _memory = device.reserve(runner.planned as u64).await?;
            while let Some(chunk) = upstream.next().await {
                let chunk = chunk?;
                let out = runner.run(&device, &chunk)?;
                let [_, h, w, c] = chunk.shape();
                let s = runner.scale;
                yield chunk.with_pixels(out, [h * s, w * s, c])?;
            }
        })
    }
}

/// A model upscale as decided when the stream opens: the tiling stays fixed for the stream so
/// seams never move between frames.
struct Runner {
    model: Arc<DeviceModel>,
    scale: usize,
    channels: Channels,
    c: usize,
    in_nc: usize,
    out_nc: usize,
    /// Frames padded to this multiple before tiling (halo tiles of unshuffle models).
    pad_to: usize,
    /// `None`: whole frames.
    plan: Option<TilePlan>,
    /// Device bytes a chunk's upscale holds at most (reserved from the device's budget).
    planned: usize,
    /// The plan's blend weights on the device, uploaded once: each tile's (rows, columns),
    /// and the per-pixel normaliser.
    tile_weights: Vec<(DeviceBuffer, DeviceBuffer)>,
    inverse: Option<DeviceBuffer>,
    /// Frames per model call.
    batch: usize,
    luma: Option<ConvWeights>,
    strategy: Strategy,
    alpha: Option<ResizePlan>,
}

impl Runner {
    fn new(model: &UpscaleModel, tiling: &Tiling, info: &StreamInfo, request: &OpenRequest) -> Result<Self> {
        let device = request.device();
        let channels = channels(model, info.channels)?;
        let (h, w, s) = (info.height, info.width, model.scale());
        let multiple = model.size_multiple();
        let max_buffer = device.max_buffer_bytes() as usize;
        let frames = request.chunk_frames();
        let (in_nc, out_nc) = (model.in_channels(), model.out_channels());
        // The stage's budget, within the device-wide one.
        let budget = device.memory_budget().map_or(tiling.budget, |b| tiling.budget.min(b as usize));
        // Bytes beside the model: converted input, accumulator, output, alpha.
        let around = |n: usize| 4 * n * (h * w * (in_nc + 1) + h * s * w * s * (2 * out_nc + info.channels + 1));
        // Peak device bytes of `n` frames in tiles of `th × tw`, and whether they fit.
        let needs = |n: usize, th: usize, tw: usize| {
            let (peak, largest) = model.forward_bytes(n, th.next_multiple_of(multiple), tw.next_multiple_of(multiple));
            // The model's estimate is for f32; half types halve it.
            let (peak, largest) = (peak * tiling.precision.bytes() / 4, largest * tiling.precision.bytes() / 4);
            let bytes = peak + around(n);
            (bytes, bytes <= budget && largest <= max_buffer && 4 * n * h * s * w * s * out_nc <= max_buffer)
        };
        let fits = |n: usize, th: usize, tw: usize| needs(n, th, tw).1;
        let mut batch = frames;
        let mut plan = None;
        let mut planned = 0;
        let whole = tiling.tile.is_none() && loop {
            if fits(batch, h, w) {
                planned = needs(batch, h, w).0;
                break true;
            }
            if batch == 1 {
                break false;
            }
            batch = batch.div_ceil(2);
        };
        let pad_to = if tiling.blend == Blend::Halo { multiple } else { 1 };
        if !whole {
            let mut tile = tiling.tile.unwrap_or(DEFAULT_TILE);
            let margin = tiling.margin.unwrap_or_else(|| (model.receptive_radius().ceil() as usize).min(32));
            loop {
                let (ph, pw) = (h.next_multiple_of(pad_to), w.next_multiple_of(pad_to));
                let candidate = match tiling.blend {
                    Blend::Feather => tiling::feather(h, w, s, tile, tiling.overlap.min(tile / 2 - 1)),
                    Blend::Halo => tiling::halo(ph, pw, s, tile, margin, tiling.halo_feather, pad_to),
                };
                let (th, tw) = candidate.tiles.iter().fold((0, 0), |(a, b), t| (a.max(t.input.h), b.max(t.input.w)));
                batch = frames;
                while batch > 1 && !fits(batch, th, tw) {
                    batch = batch.div_ceil(2);
                }
                if fits(batch, th, tw) {
                    planned = needs(batch, th, tw).0;
                    plan = Some(candidate);
                    break;
                }
                if tile / 2 < MIN_TILE {
                    return Err(Error::Device(format!(
                        "upscaling {w}x{h} frames with {} does not fit the memory budget of \
                         {:.0} MiB even in tiles of {tile} pixels",
                        model.name(),
                        budget as f64 / 1048576.0
                    )));
                }
                request.emit(EventKind::Retry {
                    reason: format!("tiles of {tile} pixels exceed the memory budget; trying {}", tile / 2),
                });
                tile /= 2;
            }
        }
        let upload_luma = |cin: usize, cout: usize, weights: &[f32]| {
            with_client!(device, client => ConvWeights::upload::<_, f32>(client, weights, None, None, (cout, cin, 1, 1)))
        };
        let luma = match channels {
            Channels::GreyThroughRgb | Channels::RgbThroughGrey => Some(upload_luma(3, 1, &[0.299, 0.587, 0.114])),
            _ => None,
        };
        let alpha = (channels == Channels::SplitAlpha).then(|| {
            with_client!(device, client => ResizePlan::new(client, (h, w), (h * s, w * s), 1, Filter::Bilinear, batch))
        });
        let tile_weights = match &plan {
            Some(plan) => plan
                .tiles
                .iter()
                .map(|t| Ok((device.upload(&t.weight_y)?, device.upload(&t.weight_x)?)))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let inverse = match &plan {
            Some(plan) => Some(match &plan.inverse {
                Some(inverse) => device.upload(inverse)?,
                None => device.upload(&vec![1.0; plan.out_h * plan.out_w])?,
            }),
            None => None,
        };
        Ok(Self {
            model: model.on_in(device, tiling.precision)?,
            tile_weights,
            inverse,
            planned,
            scale: s,
            channels,
            c: info.channels,
            in_nc,
            out_nc,
            pad_to,
            plan,
            batch,
            luma,
            strategy: device.conv_strategy(),
            alpha,
        })
    }

    /// Upscales one chunk: `[n, h·s, w·s, c]`, clamped.
    fn run(&self, device: &Device, chunk: &Chunk) -> Result<DeviceBuffer> {
        let [n, h, w, _] = chunk.shape();
        let mut parts = Vec::new();
        for start in (0..n).step_by(self.batch) {
            let count = self.batch.min(n - start);
            let frames = chunk.slice(start, count)?;
            parts.push(Chunk::new(device, self.run_batch(device, &frames)?, [count, h * self.scale, w * self.scale, self.c], frames.first_frame())?);
        }
        Ok(Chunk::concat(&parts)?.buffer().clone())
    }

    fn run_batch(&self, device: &Device, frames: &Chunk) -> Result<DeviceBuffer> {
        let [n, h, w, c] = frames.shape();
        let s = self.scale;
        let pixels = n * h * w;
        // The model's input channels.
        let input = match self.channels {
            Channels::Same => frames.buffer().clone(),
            Channels::SplitAlpha | Channels::GreyThroughRgb => {
                let rgb = device.alloc(pixels * 3)?;
                with_client!(device, client => {
                    if self.channels == Channels::SplitAlpha {
                        copy_channels::<_, f32>(client, frames.buffer(), (4, 0), &rgb, (3, 0), pixels, 3);
                    } else {
                        for k in 0..3 {
                            copy_channels::<_, f32>(client, frames.buffer(), (1, 0), &rgb, (3, k), pixels, 1);
                        }
                    }
                });
                rgb
            }
            Channels::RgbThroughGrey => {
                let grey = device.alloc(pixels)?;
                let luma = self.luma.as_ref().expect("luma weights");
                conv2d::<f32>(device, luma, Planes { buffer: frames.buffer(), stride: 3 }, (n, h, w), Planes { buffer: &grey, stride: 1 }, 0, Activation::None, None, self.strategy);
                grey
            }
        };
        let upscaled = self.upscale(device, &input, (n, h, w))?;
        // Back to the stream's channels.
        let out_pixels = pixels * s * s;
        Ok(match self.channels {
            Channels::Same => upscaled,
            Channels::SplitAlpha => {
                let out = device.alloc(out_pixels * 4)?;
                let alpha = device.alloc(pixels)?;
                let alpha_up = device.alloc(out_pixels)?;
                let plan = self.alpha.as_ref().expect("alpha plan");
                with_client!(device, client => {
                    copy_channels::<_, f32>(client, frames.buffer(), (4, 3), &alpha, (1, 0), pixels, 1);
                    resize(client, plan, &alpha, n, &alpha_up);
                    copy_channels::<_, f32>(client, &upscaled, (3, 0), &out, (4, 0), out_pixels, 3);
                    copy_channels::<_, f32>(client, &alpha_up, (1, 0), &out, (4, 3), out_pixels, 1);
                });
                out
            }
            Channels::GreyThroughRgb => {
                let grey = device.alloc(out_pixels)?;
                let luma = self.luma.as_ref().expect("luma weights");
                conv2d::<f32>(device, luma, Planes { buffer: &upscaled, stride: 3 }, (n, h * s, w * s), Planes { buffer: &grey, stride: 1 }, 0, Activation::None, None, self.strategy);
                let clamped = device.alloc(out_pixels)?;
                with_client!(device, client => combine::<_, f32>(client, &grey, None, true, &clamped));
                clamped
            }
            Channels::RgbThroughGrey => {
                let out = device.alloc(out_pixels * c)?;
                with_client!(device, client => {
                    for k in 0..3 {
                        copy_channels::<_, f32>(client, &upscaled, (1, 0), &out, (3, k), out_pixels, 1);
                    }
                });
                out
            }
        })
    }

    /// The model over `n` frames of its input channels, whole or tiled: clamped output.
    fn upscale(&self, device: &Device, input: &DeviceBuffer, (n, h, w): (usize, usize, usize)) -> Result<DeviceBuffer> {
        let (s, in_nc, out_nc) = (self.scale, self.in_nc, self.out_nc);
        let Some(plan) = &self.plan else {
            let raw = self.model.forward(device, input, (n, h, w))?;
            let out = device.alloc(raw.len())?;
            with_client!(device, client => combine::<_, f32>(client, &raw, None, true, &out));
            return Ok(out);
        };
        // Halo tiling of unshuffle models pads the whole frame once, so tiles align.
        let (ph, pw) = (h.next_multiple_of(self.pad_to), w.next_multiple_of(self.pad_to));
        let padded;
        let source = if (ph, pw) != (h, w) {
            padded = device.alloc(n * ph * pw * in_nc)?;
            with_client!(device, client => reflect_pad::<_, f32>(client, input, (n, h, w, in_nc), (ph - h, pw - w), &padded));
            &padded
        } else {
            input
        };
        let acc = device.alloc(n * plan.out_h * plan.out_w * out_nc)?;
        with_client!(device, client => fill::<_, f32>(client, &acc, 0.0));
        for (tile, (weight_y, weight_x)) in plan.tiles.iter().zip(&self.tile_weights) {
            let r = tile.input;
            let cut = device.alloc(n * r.h * r.w * in_nc)?;
            with_client!(device, client => crop::<_, f32, f32>(client, source, (n, ph, pw, in_nc), (r.y, r.x), (r.h, r.w), &cut));
            let out = self.model.forward(device, &cut, (n, r.h, r.w))?;
            let o = tile.output;
            with_client!(device, client => {
                blend::<_, f32>(client, &out, (n, o.h, o.w, out_nc), (weight_y, weight_x), &acc, (plan.out_h, plan.out_w), (o.y, o.x), true)
            });
        }
        let result = device.alloc(acc.len())?;
        let inverse = self.inverse.as_ref().expect("a tiled plan has its normaliser");
        with_client!(device, client => normalize(client, &acc, inverse, (n, plan.out_h, plan.out_w, out_nc), &result));
        if (ph, pw) == (h, w) {
            return Ok(result);
        }
        let cropped = device.alloc(n * h * s * w * s * out_nc)?;
        with_client!(device, client => {
            crop::<_, f32, f32>(client, &result, (n, ph * s, pw * s, out_nc), (0, 0), (h * s, w * s), &cropped)
        });
        Ok(cropped)
    }
}
