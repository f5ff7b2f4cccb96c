//! The decoder's architecture: read from a checkpoint's metadata (`config` → `vae`), from a
//! diffusers `config.json`, or detected from the tensors themselves.
//!
//! Every form is reduced to one list of [`Block`]s in decoding order, indexed like the
//! official weight names (`decoder.up_blocks.N`).

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
    /// Depth-to-space ×2 in time, height and width: a convolution `cin → 8·cin/reduction`
    /// shuffled into `cin/reduction` channels, plus the shuffled input tiled over the
    /// channels when `residual`.
    Upsample { cin: usize, reduction: usize, residual: bool },
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
        if let Some(name) = field(config, "_class_name").and_then(Value::as_str) {
            if name != "CausalVideoAutoencoder" {
                return Err(format!("`_class_name` {name}: not an LTX-Video VAE config"));
            }
        }
        check_dims(config)?;
        let norm = field(config, "norm_layer").and_then(Value::as_str).unwrap_or("group_norm");
        if norm != "pixel_norm" {
            return Err(format!(
                "norm_layer `{norm}` is not supported: only pixel_norm decodes chunk by chunk \
                 (every released LTX-Video VAE uses it)"
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
                "compress_all" => {
                    let reduction = usize_field(params, "multiplier", Some(1))?;
                    channels = cin / reduction;
                    if (cin * 8) % reduction != 0 || channels == 0 {
                        return Err(format!("compress_all: {cin} channels, multiplier {reduction}"));
                    }
                    Block::Upsample { cin, reduction, residual: bool_field(params, "residual", false)? }
                }
                other => {
                    return Err(format!(
                        "decoder block `{other}` is not supported (res_x, res_x_y, compress_all)"
                    ));
                }
            };
            out.push(block);
        }
        let padding = match field(config, "spatial_padding_mode") {
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

    /// A diffusers `AutoencoderKLLTXVideo` config, and for each official block index the
    /// diffusers module it is stored under.
    pub fn from_diffusers(config: &Value) -> Result<(Self, Vec<String>), String> {
        if let Some(name) = field(config, "_class_name").and_then(Value::as_str) {
            if name != "AutoencoderKLLTXVideo" {
                return Err(format!("`_class_name` {name}: not an LTX-Video VAE config"));
            }
        }
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
        let bools = |name: &str, default: Value| -> Result<Vec<bool>, String> {
            list(name, default)?
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| format!("`{name}`: {v}")))
                .collect()
        };
        use serde_json::json;
        let mut widths = ints("decoder_block_out_channels", json!([128, 256, 512, 512]))?;
        let mut layers = ints("decoder_layers_per_block", json!([4, 3, 3, 3, 4]))?;
        let mut scaling = bools("decoder_spatio_temporal_scaling", json!([true, true, true, false]))?;
        let mut noise = bools("decoder_inject_noise", json!([false, false, false, false, false]))?;
        let mut residual = bools("upsample_residual", json!([false, false, false, false]))?;
        let mut factor = ints("upsample_factor", json!([1, 1, 1, 1]))?;
        let n = widths.len();
        if n == 0
            || layers.len() != n + 1
            || noise.len() != n + 1
            || [scaling.len(), residual.len(), factor.len()].iter().any(|&l| l != n)
        {
            return Err(format!(
                "decoder lists of inconsistent lengths ({n} widths, {} layer counts, {} scalings, \
                 {} noise flags, {} residual flags, {} factors)",
                layers.len(),
                scaling.len(),
                noise.len(),
                residual.len(),
                factor.len()
            ));
        }
        for v in [&mut widths, &mut factor] {
            v.reverse();
        }
        layers.reverse();
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
                blocks.push(Block::Upsample { cin: out * f, reduction: f, residual: residual[i] });
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
        let parsed = Self {
            latent_channels: usize_field(config, "latent_channels", Some(128))?,
            out_channels: usize_field(config, "out_channels", Some(3))?,
            patch_size: usize_field(config, "patch_size", Some(4))?,
            causal: bool_field(config, "decoder_causal", false)?,
            timestep_conditioning: bool_field(config, "timestep_conditioning", false)?,
            // diffusers' decoder pads with zeros and has no setting for it.
            padding: Some(Padding::Zeros),
            blocks,
        };
        parsed.validate()?;
        Ok((parsed, paths))
    }

    /// The architecture read from official-named tensors (no config in the file): every
    /// block's kind, width and depth from its weights. Upsamplers are residual in the
    /// timestep-conditioned generation (0.9.1 on) and plain before, as released.
    pub fn detect(file: &WeightFile) -> Result<Self, String> {
        let shape = |name: &str| file.shape(name).map(<[usize]>::to_vec);
        let conv_in = shape("decoder.conv_in.conv.weight").ok_or("no decoder.conv_in.conv.weight")?;
        let conv_out = shape("decoder.conv_out.conv.weight").ok_or("no decoder.conv_out.conv.weight")?;
        if conv_in.len() != 5 || conv_out.len() != 5 {
            return Err(format!("conv_in {conv_in:?} / conv_out {conv_out:?} are not 3-D convolutions"));
        }
        let timestep_conditioning = file.contains("decoder.last_scale_shift_table");
        let mut blocks = Vec::new();
        for i in 0.. {
            let p = format!("decoder.up_blocks.{i}");
            let block = if let Some(w) = shape(&format!("{p}.res_blocks.0.conv1.conv.weight")) {
                let layers = (0..).take_while(|j| file.contains(&format!("{p}.res_blocks.{j}.conv1.conv.weight"))).count();
                let inject_noise = file.contains(&format!("{p}.res_blocks.0.per_channel_scale1"));
                Block::Mid { channels: w.first().copied().unwrap_or(0), layers, inject_noise }
            } else if let Some(w) = shape(&format!("{p}.conv.conv.weight")) {
                let (cout, cin) = (w.first().copied().unwrap_or(0), w.get(1).copied().unwrap_or(0));
                if cout == 0 || (8 * cin) % cout != 0 {
                    return Err(format!("{p}.conv.conv.weight {w:?} is not a depth-to-space convolution"));
                }
                Block::Upsample { cin, reduction: 8 * cin / cout, residual: timestep_conditioning }
            } else if let Some(w) = shape(&format!("{p}.conv1.conv.weight")) {
                Block::Res { cin: w.get(1).copied().unwrap_or(0), cout: w.first().copied().unwrap_or(0) }
            } else {
                break;
            };
            blocks.push(block);
        }
        if blocks.is_empty() {
            return Err("no decoder.up_blocks".into());
        }
        let patch2 = conv_out[0] / 3;
        let patch_size = (1..=16).find(|p| p * p == patch2).filter(|_| conv_out[0] % 3 == 0);
        let config = Self {
            latent_channels: conv_in[1],
            out_channels: 3,
            patch_size: patch_size.ok_or_else(|| format!("conv_out {conv_out:?}: not 3·p² channels"))?,
            causal: false,
            timestep_conditioning,
            padding: None,
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

    /// Depth-to-space blocks (each doubles frames and sides).
    pub fn upsamplers(&self) -> usize {
        self.blocks.iter().filter(|b| matches!(b, Block::Upsample { .. })).count()
    }

    /// Output pixels per latent pixel along each side: 2 per upsampler times the patch.
    pub fn spatial_factor(&self) -> usize {
        (1 << self.upsamplers()) * self.patch_size
    }

    /// Pixel frames of `latent_frames` latent frames (each upsampler maps F → 2F − 1).
    pub fn frames(&self, latent_frames: usize) -> usize {
        if latent_frames == 0 {
            return 0;
        }
        (latent_frames - 1) * (1 << self.upsamplers()) + 1
    }

    /// The release this architecture matches, for messages.
    pub fn version(&self) -> &'static str {
        if !self.timestep_conditioning {
            "0.9.0-like"
        } else if self.blocks.iter().any(|b| matches!(b, Block::Mid { inject_noise: true, .. })) {
            "0.9.1-like"
        } else {
            "0.9.5+-like"
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
                "out_channels {}, latent_channels {}, patch_size {}: beyond any LTX-Video VAE",
                self.out_channels, self.latent_channels, self.patch_size
            ));
        }
        if self.upsamplers() > 8 {
            return Err(format!("{} upsamplers (at most 8)", self.upsamplers()));
        }
        for b in &self.blocks {
            let (channels, layers) = match *b {
                Block::Mid { channels, layers, .. } => (channels, layers),
                other => (other.in_channels().max(other.out_channels()), 1),
            };
            if channels > MAX_CHANNELS || layers > MAX_BLOCKS {
                return Err(format!("{b:?}: beyond any LTX-Video VAE"));
            }
        }
        let mut channels = self.width();
        for (i, b) in self.blocks.iter().enumerate() {
            if b.in_channels() != channels || b.in_channels() == 0 || b.out_channels() == 0 {
                return Err(format!("up_blocks.{i} ({b:?}) does not follow {channels} channels"));
            }
            match *b {
                Block::Mid { layers: 0, .. } => return Err(format!("up_blocks.{i} has no layers")),
                Block::Upsample { cin, reduction, residual }
                    if cin % reduction != 0 || (residual && (cin % 8 != 0 || 8 % reduction != 0)) =>
                {
                    return Err(format!("up_blocks.{i}: {cin} channels do not split 2×2×2 by {reduction}"));
                }
                _ => {}
            }
            channels = b.out_channels();
        }
        Ok(())
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
                Block::Upsample { cin, reduction, .. } => {
                    conv(&mut out, format!("{p}.conv.conv"), 8 * cin / reduction, cin, 3);
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
