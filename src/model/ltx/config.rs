//! The decoder's architecture: read from a checkpoint's metadata (`config` → `vae`), from a
//! diffusers `config.json`, or detected from the tensors themselves.
//!
//! Every form is reduced to one list of [`Block`]s in decoding order, indexed like the
//! official weight names (`decoder.up_blocks.N`). One description covers the whole family:
//! LTX-Video 0.9.x, LTX-2.0, LTX-2.3 and LTX-2.5's convolutional decoder.

use framestream_kernels::conv::Padding;
use serde_json::Value;

use crate::model::weights::WeightFile;

/// Sanity bounds on a config (the largest release has 1024 channels and 8 resblocks a block).
const MAX_CHANNELS: usize = 1 << 16;
const MAX_BLOCKS: usize = 256;

/// One entry of `decoder.up_blocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// `layers` resblocks `channels → channels`, timestep-conditioned when the decoder is,
    /// with per-channel noise planes when `inject_noise`.
    Mid { channels: usize, layers: usize, inject_noise: bool },
    /// One resblock `cin → cout` with a LayerNorm + 1×1×1 convolution shortcut (0.9.0).
    Res { cin: usize, cout: usize },
    /// Depth-to-space ×2 along `axes`: a convolution `cin → S·cin/reduction` (`S` the
    /// product of the strides) shuffled into `cin/reduction` channels, plus the shuffled
    /// input tiled over the channels when `residual`.
    Upsample { cin: usize, axes: Axes, reduction: usize, residual: bool },
}

/// What an upsampler doubles (the official block names `compress_all`, `compress_time`,
/// `compress_space`; diffusers' `spatiotemporal`, `temporal`, `spatial`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axes {
    All,
    Time,
    Space,
}

impl Axes {
    /// The stride in (time, height, width).
    pub fn stride(self) -> (usize, usize, usize) {
        match self {
            Axes::All => (2, 2, 2),
            Axes::Time => (2, 1, 1),
            Axes::Space => (1, 2, 2),
        }
    }

    /// Values one input value becomes: the product of the strides.
    pub fn factor(self) -> usize {
        let (t, h, w) = self.stride();
        t * h * w
    }

    fn from_official(name: &str) -> Option<Self> {
        match name {
            "compress_all" => Some(Axes::All),
            "compress_time" => Some(Axes::Time),
            "compress_space" => Some(Axes::Space),
            _ => None,
        }
    }

    fn from_diffusers(name: &str) -> Option<Self> {
        match name {
            "spatiotemporal" => Some(Axes::All),
            "temporal" => Some(Axes::Time),
            "spatial" => Some(Axes::Space),
            _ => None,
        }
    }
}

impl Block {
    pub fn in_channels(&self) -> usize {
        match *self {
            Block::Mid { channels, .. } => channels,
            Block::Res { cin, .. } | Block::Upsample { cin, .. } => cin,
        }
    }

    pub fn out_channels(&self) -> usize {
        match *self {
            Block::Mid { channels, .. } => channels,
            Block::Res { cout, .. } => cout,
            Block::Upsample { cin, reduction, .. } => cin / reduction,
        }
    }
}

/// What the decoder is: every field of a checkpoint's config that shapes decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct LtxConfig {
    pub latent_channels: usize,
    /// Pixel channels (3).
    pub out_channels: usize,
    /// Spatial patch of the output (4).
    pub patch_size: usize,
    /// Causal temporal padding (no released decoder uses it).
    pub causal: bool,
    pub timestep_conditioning: bool,
    /// Spatial padding of every convolution, when the source says.
    pub padding: Option<Padding>,
    pub blocks: Vec<Block>,
}

fn field<'a>(config: &'a Value, name: &str) -> Option<&'a Value> {
    config.get(name).filter(|v| !v.is_null())
}

fn usize_field(config: &Value, name: &str, default: Option<usize>) -> Result<usize, String> {
    match field(config, name) {
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .map(|n| n as usize)
            .ok_or_else(|| format!("config field `{name}` is {v}, not a positive integer")),
        None => default.ok_or_else(|| format!("config field `{name}` is missing")),
    }
}

fn bool_field(config: &Value, name: &str, default: bool) -> Result<bool, String> {
    match field(config, name) {
        Some(v) => v.as_bool().ok_or_else(|| format!("config field `{name}` is {v}, not a boolean")),
        None => Ok(default),
    }
}

/// PyTorch's name of a padding (the inverse of [`parse_padding`]).
pub fn padding_name(padding: Padding) -> &'static str {
    match padding {
        Padding::Zeros => "zeros",
        Padding::Reflect => "reflect",
        Padding::Replicate => "replicate",
    }
}

/// `zeros`, `reflect`, `replicate` (PyTorch's names); `circular` is refused.
pub fn parse_padding(name: &str) -> Result<Padding, String> {
    match name {
        "zeros" => Ok(Padding::Zeros),
        "reflect" => Ok(Padding::Reflect),
        "replicate" => Ok(Padding::Replicate),
        other => Err(format!("spatial padding `{other}` is not supported (zeros, reflect, replicate)")),
    }
}

fn check_dims(config: &Value) -> Result<(), String> {
    match field(config, "dims") {
        None => Ok(()),
        Some(v) if v.as_u64() == Some(3) => Ok(()),
        Some(v) => Err(format!("`dims` {v}: only 3-D (video) decoders are supported")),
    }
}

impl LtxConfig {
    /// The official config (`CausalVideoAutoencoder`, as in a checkpoint's metadata), with the
    /// reference implementation's defaults for absent fields.
    pub fn from_official(config: &Value) -> Result<Self, String> {
        if let Some(name) = field(config, "_class_name").and_then(Value::as_str)
            && name != "CausalVideoAutoencoder"
        {
            return Err(format!(
                "`_class_name` {name}: not a convolutional LTX VAE (CausalVideoAutoencoder; \
                 LTX-2.5's diffusion decoder is not supported)"
            ));
        }
        check_dims(config)?;
        let norm = field(config, "norm_layer").and_then(Value::as_str).unwrap_or("group_norm");
        if norm != "pixel_norm" {
            return Err(format!(
                "norm_layer `{norm}` is not supported: only pixel_norm decodes chunk by chunk \
                 (every released LTX VAE uses it)"
            ));
        }
        if bool_field(config, "normalize_latent_channels", false)? {
            return Err("normalize_latent_channels is not supported".into());
        }
        let blocks = field(config, "decoder_blocks")
            .or_else(|| field(config, "blocks"))
            .and_then(Value::as_array)
            .ok_or("config has neither `decoder_blocks` nor `blocks`")?;
        let mut parsed = Vec::new();
        for entry in blocks.iter().rev() {
            let pair = entry.as_array().filter(|p| p.len() == 2);
            let (name, params) = match pair {
                Some(p) => (p[0].as_str().ok_or_else(|| format!("block {entry}: no name"))?, &p[1]),
                None => return Err(format!("block {entry} is not [name, parameters]")),
            };
            let params = match params {
                Value::Object(_) => params.clone(),
                Value::Number(_) => serde_json::json!({ "num_layers": params }),
                other => return Err(format!("block {name}: parameters {other}")),
            };
            parsed.push((name.to_string(), params));
        }
        // The width at the latent side: the base times every multiplier.
        let mut channels = usize_field(config, "decoder_base_channels", Some(128))?;
        for (name, params) in &parsed {
            let multiplier = if name == "res_x_y" {
                usize_field(params, "multiplier", Some(2))?
            } else if name.starts_with("compress") {
                usize_field(params, "multiplier", Some(1))?
            } else {
                1
            };
            channels = channels
                .checked_mul(multiplier)
                .filter(|&c| c <= MAX_CHANNELS)
                .ok_or_else(|| format!("over {MAX_CHANNELS} channels at the latent side"))?;
        }
        let mut out = Vec::new();
        for (name, params) in &parsed {
            let cin = channels;
            if let Some(axes) = Axes::from_official(name) {
                // validate() refuses a reduction that does not divide the channels.
                let reduction = usize_field(params, "multiplier", Some(1))?;
                channels = cin / reduction;
                // The reference reads `residual` for compress_all only.
                let residual = axes == Axes::All && bool_field(params, "residual", false)?;
                out.push(Block::Upsample { cin, axes, reduction, residual });
                continue;
            }
            let block = match name.as_str() {
                "res_x" => Block::Mid {
                    channels: cin,
                    layers: usize_field(params, "num_layers", Some(1))?,
                    inject_noise: bool_field(params, "inject_noise", false)?,
                },
                "res_x_y" => {
                    let multiplier = usize_field(params, "multiplier", Some(2))?;
                    if bool_field(params, "inject_noise", false)? {
                        return Err("res_x_y with inject_noise is not supported".into());
                    }
                    channels = cin / multiplier;
                    Block::Res { cin, cout: channels }
                }
                other => {
                    return Err(format!(
                        "decoder block `{other}` is not supported (res_x, res_x_y, compress_all, \
                         compress_time, compress_space)"
                    ));
                }
            };
            out.push(block);
        }
        // Older configs name it decoder_spatial_padding_mode.
        let padding = match field(config, "spatial_padding_mode").or_else(|| field(config, "decoder_spatial_padding_mode")) {
            Some(v) => Some(parse_padding(v.as_str().ok_or_else(|| format!("spatial_padding_mode {v}"))?)?),
            None => None,
        };
        let config = Self {
            latent_channels: usize_field(config, "latent_channels", None)?,
            out_channels: usize_field(config, "out_channels", Some(3))?,
            patch_size: usize_field(config, "patch_size", Some(1))?,
            causal: bool_field(config, "causal_decoder", false)?,
            timestep_conditioning: bool_field(config, "timestep_conditioning", false)?,
            padding,
            blocks: out,
        };
        config.validate()?;
        Ok(config)
    }

    /// A diffusers `AutoencoderKLLTXVideo` (0.9.x) or `AutoencoderKLLTX2Video` (2.x) config,
    /// and for each official block index the diffusers module it is stored under.
    ///
    /// Every per-block list is pixel side first except `upsample_type`, which is latent side
    /// first; absent fields take the class's defaults.
    pub fn from_diffusers(config: &Value) -> Result<(Self, Vec<String>), String> {
        use serde_json::json;
        let class = field(config, "_class_name").and_then(Value::as_str).unwrap_or("AutoencoderKLLTXVideo");
        let ltx2 = match class {
            "AutoencoderKLLTXVideo" => false,
            "AutoencoderKLLTX2Video" => true,
            other => return Err(format!("`_class_name` {other}: not an LTX VAE config")),
        };
        let list = |name: &str, default: Value| -> Result<Vec<Value>, String> {
            let v = field(config, name).cloned().unwrap_or(default);
            v.as_array().cloned().ok_or_else(|| format!("config field `{name}` is not a list"))
        };
        let ints = |name: &str, default: Value| -> Result<Vec<usize>, String> {
            list(name, default)?
                .iter()
                .map(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| format!("`{name}`: {v}")))
                .collect()
        };
        // A flag list may be one flag for every block.
        let bools = |name: &str, default: Value, len: usize| -> Result<Vec<bool>, String> {
            if let Some(flag) = field(config, name).and_then(Value::as_bool) {
                return Ok(vec![flag; len]);
            }
            list(name, default)?
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| format!("`{name}`: {v}")))
                .collect()
        };
        // The classes' defaults.
        let (widths, layers, scaling, noise, residual, factor) = if ltx2 {
            (&[256, 512, 1024][..], &[5; 4][..], &[true; 3][..], &[false; 4][..], &[true; 3][..], &[2; 3][..])
        } else {
            (&[128, 256, 512, 512][..], &[4, 3, 3, 3, 4][..], &[true, true, true, false][..], &[false; 5][..], &[false; 4][..], &[1; 4][..])
        };
        let (widths, layers, factor) = (json!(widths), json!(layers), json!(factor));
        let (scaling, noise, residual) = (json!(scaling), json!(noise), json!(residual));
        let mut widths = ints("decoder_block_out_channels", widths)?;
        let n = widths.len();
        let mut layers = ints("decoder_layers_per_block", layers)?;
        let mut scaling = bools("decoder_spatio_temporal_scaling", scaling, n)?;
        let mut noise = bools("decoder_inject_noise", noise, n + 1)?;
        let mut residual = bools("upsample_residual", residual, n)?;
        let mut factor = ints("upsample_factor", factor)?;
        // Latent side first; absent or null means every upsampler doubles all three axes.
        let kinds = ["upsample_type", "decoder_upsample_type"].into_iter().find_map(|k| Some((k, field(config, k)?)));
        let axes = match kinds {
            None => vec![Axes::All; n],
            Some((key, v)) => v
                .as_array()
                .ok_or_else(|| format!("config field `{key}` is {v}, not a list"))?
                .iter()
                .map(|k| {
                    k.as_str().and_then(Axes::from_diffusers).ok_or_else(|| {
                        format!("upsample type {k} is not supported (spatiotemporal, temporal, spatial)")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if n == 0
            || layers.len() != n + 1
            || noise.len() != n + 1
            || [scaling.len(), residual.len(), factor.len(), axes.len()].iter().any(|&l| l != n)
        {
            return Err(format!(
                "decoder lists of inconsistent lengths ({n} widths, {} layer counts, {} scalings, \
                 {} noise flags, {} residual flags, {} factors, {} upsample types)",
                layers.len(),
                scaling.len(),
                noise.len(),
                residual.len(),
                factor.len(),
                axes.len()
            ));
        }
        if n > MAX_BLOCKS {
            return Err(format!("{n} decoder blocks (at most {MAX_BLOCKS})"));
        }
        for v in [&mut widths, &mut factor, &mut layers] {
            v.reverse();
        }
        for v in [&mut scaling, &mut noise, &mut residual] {
            v.reverse();
        }
        let mut blocks = Vec::new();
        let mut paths = Vec::new();
        let mut channels = widths[0];
        blocks.push(Block::Mid { channels, layers: layers[0], inject_noise: noise[0] });
        paths.push("mid_block".to_string());
        for i in 0..n {
            let f = factor[i].max(1);
            let out = widths[i] / f;
            if f == 1 && channels != out {
                blocks.push(Block::Res { cin: channels, cout: out });
                paths.push(format!("up_blocks.{i}.conv_in"));
                if noise[i + 1] {
                    return Err("a channel-changing resblock with noise injection is not supported".into());
                }
            } else if channels != out * f {
                return Err(format!("up block {i}: {channels} channels into a block of {out}×{f}"));
            }
            if scaling[i] {
                // diffusers honours `upsample_residual` for every stride (the official config
                // only for compress_all).
                blocks.push(Block::Upsample { cin: out * f, axes: axes[i], reduction: f, residual: residual[i] });
                paths.push(format!("up_blocks.{i}.upsamplers.0"));
            }
            channels = out;
            blocks.push(Block::Mid { channels, layers: layers[i + 1], inject_noise: noise[i + 1] });
            paths.push(format!("up_blocks.{i}"));
        }
        let patch_t = usize_field(config, "patch_size_t", Some(1))?;
        if patch_t != 1 {
            return Err(format!("patch_size_t {patch_t} is not supported (1)"));
        }
        // 0.9.x's diffusers decoder pads with zeros and has no setting for it; 2.x's has one.
        let padding = match (ltx2, field(config, "decoder_spatial_padding_mode")) {
            (false, _) => Padding::Zeros,
            (true, None) => Padding::Reflect,
            (true, Some(v)) => parse_padding(v.as_str().ok_or_else(|| format!("decoder_spatial_padding_mode {v}"))?)?,
        };
        let parsed = Self {
            latent_channels: usize_field(config, "latent_channels", Some(128))?,
            out_channels: usize_field(config, "out_channels", Some(3))?,
            patch_size: usize_field(config, "patch_size", Some(4))?,
            causal: bool_field(config, "decoder_causal", ltx2)?,
            timestep_conditioning: bool_field(config, "timestep_conditioning", false)?,
            padding: Some(padding),
            blocks,
        };
        parsed.validate()?;
        Ok((parsed, paths))
    }

    /// The architecture read from official-named tensors (no config in the file): every
    /// block's kind, width and depth from its weights, each upsampler's strides from its
    /// convolution and the next block's width. What the weights cannot tell — whether
    /// upsamplers are residual, the padding — follows the release whose layout the file has:
    /// residual for the timestep-conditioned 0.9.1/0.9.5+ and for LTX-2.0 (no conditioning,
    /// spatiotemporal upsamplers that all halve the width; reflect), not residual for 0.9.0 and
    /// for LTX-2.3-like layouts (temporal or spatial upsamplers; zeros). Anything else is
    /// refused with what is missing.
    pub fn detect(file: &WeightFile) -> Result<Self, String> {
        let shape = |name: &str| file.shape(name).map(<[usize]>::to_vec);
        let conv_in = shape("decoder.conv_in.conv.weight").ok_or("no decoder.conv_in.conv.weight")?;
        let conv_out = shape("decoder.conv_out.conv.weight").ok_or("no decoder.conv_out.conv.weight")?;
        if conv_in.len() != 5 || conv_out.len() != 5 {
            return Err(format!("conv_in {conv_in:?} / conv_out {conv_out:?} are not 3-D convolutions"));
        }
        // Not last_scale_shift_table: a decoder without conditioning may carry a zero one.
        let timestep_conditioning = file.contains("decoder.last_time_embedder.timestep_embedder.linear_1.weight");
        let dim = |w: &[usize], i: usize| w.get(i).copied().unwrap_or(0);
        // Upsamplers as (block index, conv input, conv output), resolved once the next block's
        // width is known.
        let mut blocks = Vec::new();
        let mut upsamplers = Vec::new();
        for i in 0..MAX_BLOCKS {
            let p = format!("decoder.up_blocks.{i}");
            let block = if let Some(w) = shape(&format!("{p}.res_blocks.0.conv1.conv.weight")) {
                let layers = (0..).take_while(|j| file.contains(&format!("{p}.res_blocks.{j}.conv1.conv.weight"))).count();
                let inject_noise = file.contains(&format!("{p}.res_blocks.0.per_channel_scale1"));
                Block::Mid { channels: dim(&w, 0), layers, inject_noise }
            } else if let Some(w) = shape(&format!("{p}.conv.conv.weight")) {
                upsamplers.push((i, dim(&w, 1), dim(&w, 0)));
                Block::Upsample { cin: dim(&w, 1), axes: Axes::All, reduction: 1, residual: false }
            } else if let Some(w) = shape(&format!("{p}.conv1.conv.weight")) {
                Block::Res { cin: dim(&w, 1), cout: dim(&w, 0) }
            } else {
                break;
            };
            blocks.push(block);
        }
        if blocks.is_empty() {
            return Err("no decoder.up_blocks".into());
        }
        for &(i, cin, cout) in &upsamplers {
            let next = blocks.get(i + 1).map_or(dim(&conv_out, 1), Block::in_channels);
            let p = format!("decoder.up_blocks.{i}.conv.conv.weight");
            let shuffled = cout.checked_mul(cin.checked_div(next).unwrap_or(0));
            if next == 0 || cin == 0 || cin % next != 0 || shuffled.is_none_or(|s| s % cin != 0) {
                return Err(format!("{p} [{cout}, {cin}, …] is not a depth-to-space convolution into {next} channels"));
            }
            let reduction = cin / next;
            let axes = match shuffled.unwrap_or(0) / cin {
                8 => Axes::All,
                2 => Axes::Time,
                4 => Axes::Space,
                s => return Err(format!("{p} [{cout}, {cin}, …] into {next} channels: a stride product of {s}, not 8, 4 or 2")),
            };
            if let Block::Upsample { axes: a, reduction: r, .. } = &mut blocks[i] {
                (*a, *r) = (axes, reduction);
            }
        }
        let ups: Vec<(Axes, usize)> = blocks
            .iter()
            .filter_map(|b| match *b {
                Block::Upsample { axes, reduction, .. } => Some((axes, reduction)),
                _ => None,
            })
            .collect();
        let has_res = blocks.iter().any(|b| matches!(b, Block::Res { .. }));
        let (residual, padding) = if ups.iter().any(|&(a, _)| a != Axes::All) {
            (false, Some(Padding::Zeros))
        } else if timestep_conditioning {
            (true, None)
        } else if has_res || ups.iter().all(|&(_, r)| r == 1) {
            (false, None)
        } else if ups.iter().all(|&(_, r)| r == 2) {
            (true, Some(Padding::Reflect))
        } else {
            return Err(format!(
                "the weights do not tell whether the upsamplers (reductions {:?}) are residual: \
                 the file needs its config in the metadata (`config` → `vae` → `decoder_blocks`)",
                ups.iter().map(|u| u.1).collect::<Vec<_>>()
            ));
        };
        for b in &mut blocks {
            if let Block::Upsample { axes: Axes::All, residual: r, .. } = b {
                *r = residual;
            }
        }
        let patch2 = conv_out[0] / 3;
        let patch_size = (1..=16).find(|p| p * p == patch2).filter(|_| conv_out[0] % 3 == 0);
        let config = Self {
            latent_channels: conv_in[1],
            out_channels: 3,
            patch_size: patch_size.ok_or_else(|| format!("conv_out {conv_out:?}: not 3·p² channels"))?,
            causal: false,
            timestep_conditioning,
            padding,
            blocks,
        };
        config.validate()?;
        Ok(config)
    }

    /// Channels conv_in produces.
    pub fn width(&self) -> usize {
        self.blocks[0].in_channels()
    }

    /// Channels entering the head.
    pub fn head_channels(&self) -> usize {
        self.blocks.last().expect("validated: blocks").out_channels()
    }

    /// The upsamplers' strides.
    fn strides(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        self.blocks.iter().filter_map(|b| match b {
            Block::Upsample { axes, .. } => Some(axes.stride()),
            _ => None,
        })
    }

    /// Output pixels per latent pixel along each side: the patch times every upsampler's
    /// spatial stride.
    pub fn spatial_factor(&self) -> usize {
        self.strides().map(|s| s.1).product::<usize>() * self.patch_size
    }

    /// Pixel frames per latent frame after the first: every upsampler's temporal stride.
    pub fn temporal_factor(&self) -> usize {
        self.strides().map(|s| s.0).product()
    }

    /// Pixel frames of `latent_frames` latent frames (a temporal upsampler maps F → 2F − 1).
    pub fn frames(&self, latent_frames: usize) -> usize {
        if latent_frames == 0 {
            return 0;
        }
        (latent_frames - 1) * self.temporal_factor() + 1
    }

    /// The release this architecture is, or is written like ("LTX-2.3", "LTX-Video
    /// 0.9.1-like", …), for messages.
    pub fn version(&self) -> String {
        let residual = self.blocks.iter().any(|b| matches!(b, Block::Upsample { residual: true, .. }));
        let (name, released) = if self.strides().any(|s| s != (2, 2, 2)) {
            ("LTX-2.3", 407_169_072)
        } else if !self.timestep_conditioning && residual {
            ("LTX-2.0", 528_380_720)
        } else if !self.timestep_conditioning {
            ("LTX-Video 0.9.0", 238_789_296)
        } else if self.blocks.iter().any(|b| matches!(b, Block::Mid { inject_noise: true, .. })) {
            ("LTX-Video 0.9.1", 754_572_081)
        } else {
            ("LTX-Video 0.9.5+", 552_814_641)
        };
        if self.parameters() == released && self.latent_channels == 128 {
            name.to_string()
        } else {
            format!("{name}-like")
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.blocks.is_empty() || self.blocks.len() > MAX_BLOCKS {
            return Err(format!("{} decoder blocks (1 to {MAX_BLOCKS})", self.blocks.len()));
        }
        if self.out_channels == 0 || self.latent_channels == 0 || self.patch_size == 0 {
            return Err("zero channels or patch size".into());
        }
        if self.out_channels > 4 || self.latent_channels > MAX_CHANNELS || self.patch_size > 16 {
            return Err(format!(
                "out_channels {}, latent_channels {}, patch_size {}: beyond any LTX VAE",
                self.out_channels, self.latent_channels, self.patch_size
            ));
        }
        if self.strides().count() > 8 {
            return Err(format!("{} upsamplers (at most 8)", self.strides().count()));
        }
        for b in &self.blocks {
            let (channels, layers) = match *b {
                Block::Mid { channels, layers, .. } => (channels, layers),
                other => (other.in_channels().max(other.out_channels()), 1),
            };
            if channels > MAX_CHANNELS || layers > MAX_BLOCKS {
                return Err(format!("{b:?}: beyond any LTX VAE"));
            }
        }
        let mut channels = self.width();
        for (i, b) in self.blocks.iter().enumerate() {
            if b.in_channels() != channels || b.in_channels() == 0 || b.out_channels() == 0 {
                return Err(format!("up_blocks.{i} ({b:?}) does not follow {channels} channels"));
            }
            match *b {
                Block::Mid { layers: 0, .. } => return Err(format!("up_blocks.{i} has no layers")),
                Block::Upsample { cin, axes, reduction, residual }
                    if cin % reduction != 0
                        || (residual && (cin % axes.factor() != 0 || axes.factor() % reduction != 0)) =>
                {
                    let (t, h, w) = axes.stride();
                    return Err(format!(
                        "up_blocks.{i}: {cin} channels do not split {t}×{h}×{w} with reduction {reduction}{}",
                        if residual { " and a residual path" } else { "" }
                    ));
                }
                _ => {}
            }
            channels = b.out_channels();
        }
        Ok(())
    }

    /// Values of temporal state a decode carries from chunk to chunk at a latent of `h × w`
    /// pixels, whatever the video's length: two input frames per k = 3 convolution, two
    /// frames per resblock skip queue and per residual upsampler queue (an upper bound;
    /// times the element size for bytes).
    /// Saturates at `usize::MAX`.
    pub fn carried_state(&self, (h, w): (usize, usize)) -> usize {
        // In u128: any validated config times any latent side below 2^32 fits.
        let n = |v: usize| v as u128;
        let mut pixels = n(h) * n(w);
        let mut values = 2 * pixels * n(self.latent_channels);
        for block in &self.blocks {
            values += 2 * pixels
                * match *block {
                    // conv1 and conv2 inputs and the skip queue, per resblock.
                    Block::Mid { channels, layers, .. } => 3 * n(channels) * n(layers),
                    Block::Res { cin, cout } => n(cin) + 2 * n(cout),
                    Block::Upsample { cin, .. } => n(cin),
                };
            if let Block::Upsample { cin, axes, reduction, residual } = *block {
                let (_, sh, sw) = axes.stride();
                pixels *= n(sh * sw);
                if residual {
                    values += 2 * pixels * n(cin / reduction);
                }
            }
        }
        usize::try_from(values + 2 * pixels * n(self.head_channels())).unwrap_or(usize::MAX)
    }

    /// Parameters of the decoder (the latent statistics excluded).
    pub fn parameters(&self) -> usize {
        self.tensors()
            .iter()
            .filter(|(n, _)| !n.starts_with("per_channel"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Every tensor the decoder reads, official names, with its shape.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let conv = |out: &mut Vec<(String, Vec<usize>)>, name: String, cout: usize, cin: usize, k: usize| {
            out.push((format!("{name}.weight"), vec![cout, cin, k, k, k]));
            out.push((format!("{name}.bias"), vec![cout]));
        };
        let mlp = |out: &mut Vec<(String, Vec<usize>)>, name: String, d: usize| {
            let p = format!("{name}.timestep_embedder");
            out.push((format!("{p}.linear_1.weight"), vec![d, 256]));
            out.push((format!("{p}.linear_1.bias"), vec![d]));
            out.push((format!("{p}.linear_2.weight"), vec![d, d]));
            out.push((format!("{p}.linear_2.bias"), vec![d]));
        };
        conv(&mut out, "decoder.conv_in.conv".into(), self.width(), self.latent_channels, 3);
        for (i, b) in self.blocks.iter().enumerate() {
            let p = format!("decoder.up_blocks.{i}");
            match *b {
                Block::Mid { channels: c, layers, inject_noise } => {
                    if self.timestep_conditioning {
                        mlp(&mut out, format!("{p}.time_embedder"), 4 * c);
                    }
                    for j in 0..layers {
                        let r = format!("{p}.res_blocks.{j}");
                        conv(&mut out, format!("{r}.conv1.conv"), c, c, 3);
                        conv(&mut out, format!("{r}.conv2.conv"), c, c, 3);
                        if self.timestep_conditioning {
                            out.push((format!("{r}.scale_shift_table"), vec![4, c]));
                        }
                        if inject_noise {
                            out.push((format!("{r}.per_channel_scale1"), vec![c, 1, 1]));
                            out.push((format!("{r}.per_channel_scale2"), vec![c, 1, 1]));
                        }
                    }
                }
                Block::Res { cin, cout } => {
                    conv(&mut out, format!("{p}.conv1.conv"), cout, cin, 3);
                    conv(&mut out, format!("{p}.conv2.conv"), cout, cout, 3);
                    conv(&mut out, format!("{p}.conv_shortcut"), cout, cin, 1);
                    out.push((format!("{p}.norm3.norm.weight"), vec![cin]));
                    out.push((format!("{p}.norm3.norm.bias"), vec![cin]));
                }
                Block::Upsample { cin, axes, reduction, .. } => {
                    conv(&mut out, format!("{p}.conv.conv"), axes.factor() * cin / reduction, cin, 3);
                }
            }
        }
        let head = self.head_channels();
        conv(&mut out, "decoder.conv_out.conv".into(), self.out_channels * self.patch_size.pow(2), head, 3);
        if self.timestep_conditioning {
            out.push(("decoder.timestep_scale_multiplier".into(), vec![]));
            mlp(&mut out, "decoder.last_time_embedder".into(), 2 * head);
            out.push(("decoder.last_scale_shift_table".into(), vec![2, head]));
        }
        for stat in ["std-of-means", "mean-of-means"] {
            out.push((format!("per_channel_statistics.{stat}"), vec![self.latent_channels]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The released decoders' configs (as ComfyUI guesses them for files without one).
    fn released(version: &str) -> Value {
        let mut config = json!({
            "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
            "latent_channels": 128, "norm_layer": "pixel_norm", "patch_size": 4,
            "latent_log_var": "uniform", "use_quant_conv": false, "causal_decoder": false,
        });
        let extra = match version {
            "0.9.0" => json!({ "blocks": [["res_x", 4], ["compress_all", 1], ["res_x_y", 1], ["res_x", 3],
                ["compress_all", 1], ["res_x_y", 1], ["res_x", 3], ["compress_all", 1], ["res_x", 3], ["res_x", 4]] }),
            "0.9.1" => json!({ "timestep_conditioning": true, "decoder_blocks": [
                ["res_x", {"num_layers": 5, "inject_noise": true}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 6, "inject_noise": true}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 7, "inject_noise": true}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 8, "inject_noise": false}]] }),
            _ => json!({ "timestep_conditioning": true, "decoder_blocks": [
                ["res_x", {"num_layers": 5, "inject_noise": false}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 5, "inject_noise": false}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 5, "inject_noise": false}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 5, "inject_noise": false}]] }),
        };
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        config
    }

    #[test]
    fn released_decoders_have_the_known_tensors_and_parameters() {
        // (version, tensors including the 3 statistics a decoder does not read, parameters)
        for (version, tensors, params) in
            [("0.9.0", 99, 238_789_296usize), ("0.9.1", 203, 754_572_081), ("0.9.5", 137, 552_814_641)]
        {
            let config = LtxConfig::from_official(&released(version)).unwrap();
            assert_eq!(config.tensors().len() + 3, tensors, "{version}");
            assert_eq!(config.parameters(), params, "{version}");
            assert_eq!(config.spatial_factor(), 32);
            assert_eq!(config.frames(3), 17);
            assert_eq!(config.width(), if version == "0.9.0" { 512 } else { 1024 });
        }
    }

    /// The LTX-2 releases' metadata configs (LTX-2.3 as published; LTX-2.0 as diffusers
    /// describes it).
    fn released_ltx2(version: &str) -> Value {
        let blocks = if version == "2.3" {
            json!([["res_x", {"num_layers": 4}], ["compress_space", {"multiplier": 2}], ["res_x", {"num_layers": 6}],
                ["compress_time", {"multiplier": 2}], ["res_x", {"num_layers": 4}], ["compress_all", {"multiplier": 1}],
                ["res_x", {"num_layers": 2}], ["compress_all", {"multiplier": 2}], ["res_x", {"num_layers": 2}]])
        } else {
            json!([["res_x", {"num_layers": 5}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 5}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 5}], ["compress_all", {"residual": true, "multiplier": 2}],
                ["res_x", {"num_layers": 5}]])
        };
        json!({
            "_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
            "latent_channels": 128, "patch_size": 4, "norm_layer": "pixel_norm", "latent_log_var": "uniform",
            "use_quant_conv": false, "causal_decoder": false, "timestep_conditioning": false,
            "normalize_latent_channels": false, "encoder_base_channels": 128, "decoder_base_channels": 128,
            "spatial_padding_mode": if version == "2.3" { "zeros" } else { "reflect" }, "scaling_factor": 1.0,
            "decoder_blocks": blocks,
        })
    }

    #[test]
    fn ltx2_releases_have_the_known_graphs_and_parameters() {
        let v23 = LtxConfig::from_official(&released_ltx2("2.3")).unwrap();
        let mid = |channels, layers| Block::Mid { channels, layers, inject_noise: false };
        let up = |cin, axes, reduction| Block::Upsample { cin, axes, reduction, residual: false };
        assert_eq!(
            v23.blocks,
            [mid(1024, 2), up(1024, Axes::All, 2), mid(512, 2), up(512, Axes::All, 1), mid(512, 4),
                up(512, Axes::Time, 2), mid(256, 6), up(256, Axes::Space, 2), mid(128, 4)]
        );
        assert_eq!(v23.padding, Some(Padding::Zeros));
        let v20 = LtxConfig::from_official(&released_ltx2("2.0")).unwrap();
        assert_eq!(v20.padding, Some(Padding::Reflect));
        // (config, decoder tensors besides the 2 statistics, parameters, name)
        for (config, tensors, params, name) in
            [(&v20, 90, 528_380_720usize, "LTX-2.0"), (&v23, 84, 407_169_072, "LTX-2.3")]
        {
            assert_eq!(config.tensors().len(), tensors + 2, "{name}");
            assert_eq!(config.parameters(), params, "{name}");
            assert_eq!(config.version(), name);
            assert_eq!((config.spatial_factor(), config.temporal_factor()), (32, 8), "{name}");
            assert_eq!(config.frames(126), 1001, "{name}: 1001 frames of the headline latent");
            assert_eq!(config.width(), 1024);
            assert!(!config.timestep_conditioning);
        }
        // The same decoders as diffusers describes them: lists pixel side first, except
        // upsample_type (latent side first); a null upsample type means spatiotemporal.
        let (df23, paths) = LtxConfig::from_diffusers(&json!({
            "_class_name": "AutoencoderKLLTX2Video", "latent_channels": 128, "patch_size": 4, "patch_size_t": 1,
            "decoder_block_out_channels": [256, 512, 512, 1024], "decoder_layers_per_block": [4, 6, 4, 2, 2],
            "decoder_spatio_temporal_scaling": [true, true, true, true], "decoder_inject_noise": [false, false, false, false, false],
            "upsample_type": ["spatiotemporal", "spatiotemporal", "temporal", "spatial"],
            "upsample_residual": [false, false, false, false], "upsample_factor": [2, 2, 1, 2],
            "timestep_conditioning": false, "decoder_causal": false, "decoder_spatial_padding_mode": "zeros",
        }))
        .unwrap();
        assert_eq!(df23, v23);
        assert_eq!(paths[7], "up_blocks.3.upsamplers.0");
        assert_eq!(paths[8], "up_blocks.3");
        let (df20, _) = LtxConfig::from_diffusers(&json!({
            "_class_name": "AutoencoderKLLTX2Video", "latent_channels": 128,
            "decoder_block_out_channels": [256, 512, 1024], "decoder_layers_per_block": [5, 5, 5, 5],
            "decoder_upsample_type": null, "upsample_residual": [true, true, true], "upsample_factor": [2, 2, 2],
            "decoder_causal": false, "timestep_conditioning": false,
        }))
        .unwrap();
        assert_eq!(df20, v20, "reflect is the class default");
        // A 1280×720 request: the latent is 40×22, 1280×704 pixels; the state carried
        // between chunks there (f32), as the reference estimates it: 2.05 and 1.71 GiB.
        assert_eq!(22 * v23.spatial_factor(), 704);
        let gib = |c: &LtxConfig| (c.carried_state((22, 40)) * 4) as f64 / (1u64 << 30) as f64;
        assert!((gib(&v23) - 2.05).abs() < 0.01 && (gib(&v20) - 1.71).abs() < 0.01, "{} {}", gib(&v23), gib(&v20));
    }

    #[test]
    fn upsamplers_of_every_stride_parse_and_validate() {
        let mut config = released_ltx2("2.3");
        // compress_time / compress_space are never residual, whatever the entry says.
        config["decoder_blocks"][1] = json!(["compress_space", {"multiplier": 2, "residual": true}]);
        let parsed = LtxConfig::from_official(&config).unwrap();
        assert!(matches!(parsed.blocks[7], Block::Upsample { axes: Axes::Space, residual: false, .. }));
        // A residual upsampler needs its channels to split by the stride product.
        let mut config = released_ltx2("2.0");
        config["decoder_base_channels"] = json!(3);
        config["decoder_blocks"][1] = json!(["compress_all", {"multiplier": 2, "residual": true}]);
        let err = LtxConfig::from_official(&config).unwrap_err();
        assert!(err.contains("2×2×2") && err.contains("residual"), "{err}");
        // Older configs name the padding decoder_spatial_padding_mode.
        let mut config = released_ltx2("2.3");
        config.as_object_mut().unwrap().remove("spatial_padding_mode");
        config["decoder_spatial_padding_mode"] = json!("replicate");
        assert_eq!(LtxConfig::from_official(&config).unwrap().padding, Some(Padding::Replicate));
        // LTX-2.5's diffusion decoder is another class.
        let mut config = released_ltx2("2.3");
        config["_class_name"] = json!("DiffusionVideoDecoder");
        assert!(LtxConfig::from_official(&config).unwrap_err().contains("diffusion decoder"));
        let mut config = released_ltx2("2.3");
        config["decoder_blocks"][0] = json!(["attn", {"num_layers": 1}]);
        assert!(LtxConfig::from_official(&config).unwrap_err().contains("`attn`"));
    }

    #[test]
    fn unsupported_configs_are_refused() {
        let mut config = released("0.9.5");
        config["norm_layer"] = json!("group_norm");
        assert!(LtxConfig::from_official(&config).unwrap_err().contains("group_norm"));
        let mut config = released("0.9.5");
        config["decoder_blocks"][0] = json!(["attn_res_x", 2]);
        assert!(LtxConfig::from_official(&config).unwrap_err().contains("attn_res_x"));
        let mut config = released("0.9.5");
        config["spatial_padding_mode"] = json!("circular");
        assert!(LtxConfig::from_official(&config).unwrap_err().contains("circular"));
        let mut config = released("0.9.5");
        config["dims"] = json!(2);
        assert!(LtxConfig::from_official(&config).unwrap_err().contains("dims"));
        // Sizes no checkpoint can have are refused before anything is computed from them.
        let mut config = released("0.9.5");
        config["decoder_base_channels"] = json!(u64::MAX / 2);
        assert!(LtxConfig::from_official(&config).unwrap_err().contains("channels"));
        let mut config = released("0.9.5");
        config["decoder_blocks"] = json!(vec![json!(["compress_all", 1]); 70]);
        assert!(LtxConfig::from_official(&config).is_err());
    }
}
