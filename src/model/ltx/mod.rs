//! The LTX VAE decoder, one for the whole family — LTX-Video 0.9.0, 0.9.1, 0.9.5–0.9.8, LTX-2.0,
//! LTX-2.3 (and LTX-2.5's convolutional decoder) and any model written the same way:
//! checkpoints in the official, combined (`vae.` beside the transformer, `audio_vae.`,
//! `vocoder.`) and diffusers (`AutoencoderKLLTXVideo`, `AutoencoderKLLTX2Video`) namings, and a
//! streaming decoder that turns a latent into frames chunk by chunk (see
//! [`crate::source::LtxVaeDecode`]).

mod config;
mod decoder;
mod names;

use std::path::Path;
use std::sync::Arc;

use framestream_kernels::{DeviceBuffer, Element};
use framestream_kernels::conv::{ConvWeights, Strategy};

pub use config::{Axes, Block, LtxConfig};
pub use framestream_kernels::conv::Padding;
pub(crate) use decoder::{DecodeParams, pipeline};
pub use crate::model::latent::Latent;
// Also here: the decoder had it first.
pub use crate::model::Precision;

use crate::device::{Device, ModelKey, with_client};
use crate::error::{Error, Result};
use crate::model::weights::WeightFile;
use crate::model::{count, open_vae, weights_error, with_element};

/// An LTX VAE decoder: its architecture and weights (memory-mapped; uploaded once per
/// device).
#[derive(Clone)]
pub struct LtxVae {
    name: String,
    config: LtxConfig,
    padding: Padding,
    /// Official names.
    weights: Arc<WeightFile>,
    /// Its weights in the devices' caches.
    key: Arc<ModelKey>,
}

impl std::fmt::Debug for LtxVae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LtxVae")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| weights_error(path, format!("not valid JSON: {e}")))
}

impl LtxVae {
    /// [`load`](Self::load) on a thread of its own.
    pub async fn load_async(path: impl Into<std::path::PathBuf>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("model loading", move || Self::load(path)).await
    }

    /// Loads a decoder from a `.safetensors` file (official or combined checkpoint; the
    /// config from its metadata, else detected from the tensors; diffusers names when a
    /// `config.json` lies beside it) or from a diffusers `vae/` folder. Blocking (it reads
    /// the file): async code uses [`load_async`](Self::load_async).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, config_json) = open_vae(path)?;
        Self::from_file(path, file, config_json)
    }

    /// A decoder from weights already open (or held in memory): official or combined
    /// naming, the config from the metadata or detected.
    pub fn from_weights(file: WeightFile) -> Result<Self> {
        let path = file.path().to_path_buf();
        Self::from_file(&path, file, None)
    }

    /// A decoder from `file`, opened from `path` with the `config.json` found there.
    pub(crate) fn from_file(path: &Path, file: WeightFile, config_json: Option<std::path::PathBuf>) -> Result<Self> {
        if path.is_dir() && config_json.is_none() {
            return Err(weights_error(
                path,
                "a folder, but not a diffusers VAE folder (config.json and diffusion_pytorch_model.safetensors)",
            ));
        }
        if crate::model::wan::is_wan(&file) {
            return Err(weights_error(path, "a Wan VAE, not an LTX VAE: load it with WanVae (or VideoVae, which tells them apart)"));
        }
        let file = names::strip_vae_prefix(&file);
        let (config, file) = if names::is_diffusers(&file) {
            let config_path = config_json.ok_or_else(|| {
                weights_error(path, "diffusers tensor names, but no config.json beside the file")
            })?;
            let (config, paths) =
                LtxConfig::from_diffusers(&read_json(&config_path)?).map_err(|m| weights_error(&config_path, m))?;
            (config, names::diffusers_to_official(&file, &paths))
        } else {
            (Self::official_config(path, &file)?, file)
        };
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // The decoder's padding when the file does not say: reflect, as ComfyUI decodes.
        let padding = config.padding.unwrap_or(Padding::Reflect);
        let vae = Self { name, config, padding, weights: Arc::new(file), key: ModelKey::new() };
        vae.check_shapes(path)?;
        Ok(vae)
    }

    fn official_config(path: &Path, file: &WeightFile) -> Result<LtxConfig> {
        if !file.contains("decoder.conv_in.conv.weight") {
            let found: Vec<&str> = file.names().take(4).collect();
            return Err(weights_error(
                path,
                format!(
                    "not an LTX VAE: no decoder.conv_in.conv.weight among {} tensors ({}…)",
                    file.names().count(),
                    found.join(", ")
                ),
            ));
        }
        let Some(text) = file.metadata().get("config") else {
            return LtxConfig::detect(file).map_err(|m| weights_error(path, m));
        };
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| weights_error(path, format!("metadata config is not JSON: {e}")))?;
        let vae = json.get("vae").unwrap_or(&json);
        LtxConfig::from_official(vae).map_err(|m| weights_error(path, format!("metadata config: {m}")))
    }

    /// Every tensor the decoder reads is present with its shape.
    fn check_shapes(&self, path: &Path) -> Result<()> {
        for (name, shape) in self.config.tensors() {
            match self.weights.shape(&name) {
                Some(found) if found == shape.as_slice() => {}
                Some(found) => {
                    return Err(weights_error(
                        path,
                        format!(
                            "tensor {name} has shape {found:?}, expected {shape:?} for the {} \
                             decoder its config describes",
                            self.config.version()
                        ),
                    ));
                }
                None => {
                    return Err(weights_error(path, format!("missing tensor {name} (expected shape {shape:?})")));
                }
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &LtxConfig {
        &self.config
    }

    /// The spatial padding of every convolution.
    pub fn padding(&self) -> Padding {
        self.padding
    }

    /// Decodes with another spatial padding than the file's (or the default, reflect).
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Parameters of the decoder (statistics excluded).
    pub fn parameters(&self) -> usize {
        self.config.parameters()
    }

    /// What was recognised, for people: "LTX-2.3 VAE, 407 M parameters, zeros padding".
    pub fn description(&self) -> String {
        let padding = config::padding_name(self.padding);
        format!("{} VAE, {} parameters, {padding} padding", self.config.version(), count(self.parameters()))
    }

    fn tensor(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.weights.tensor(name)?.data)
    }

    /// Uploads the weights to `device` now, for decodes in `precision` (else the first such
    /// decode on it does).
    pub fn upload_to(&self, device: &Device, precision: Precision) -> Result<()> {
        with_element!(precision, E => self.on::<E>(device).map(drop))
    }

    /// The weights on `device` as `E`, uploaded once per device and type on a stream of
    /// their own.
    pub(crate) fn on<E: Element>(&self, device: &Device) -> Result<Arc<DeviceWeights>> {
        Precision::ensure_supported::<E>(device, "decode")?;
        device.model_weights(&self.key, Precision::of::<E>(), |device| self.upload_weights::<E>(device))
    }

    fn conv<E: Element>(&self, device: &Device, name: &str, (cout, cin, k): (usize, usize, usize)) -> Result<ConvWeights> {
        let w = self.tensor(&format!("{name}.weight"))?;
        let b = self.tensor(&format!("{name}.bias"))?;
        let kt = k;
        let per_channel = kt * k * k * cin * size_of::<E>();
        device.check_buffer(per_channel, &format!("one output channel of {name}"))?;
        Ok(with_client!(device, client => {
            ConvWeights::upload::<_, E>(client, &w, Some(&b), None, (cout, cin, kt, k))
        }))
    }

    fn upload_weights<E: Element>(&self, device: &Device) -> Result<DeviceWeights> {
        let c = &self.config;
        let conv_in = self.conv::<E>(device, "decoder.conv_in.conv", (c.width(), c.latent_channels, 3))?;
        let mut blocks = Vec::new();
        for (i, block) in c.blocks.iter().enumerate() {
            let p = format!("decoder.up_blocks.{i}");
            blocks.push(match *block {
                Block::Mid { channels, layers, inject_noise } => {
                    let mut res = Vec::new();
                    for j in 0..layers {
                        let r = format!("{p}.res_blocks.{j}");
                        let noise_scales = if inject_noise {
                            Some((
                                device.upload_as::<E>(&self.tensor(&format!("{r}.per_channel_scale1"))?)?,
                                device.upload_as::<E>(&self.tensor(&format!("{r}.per_channel_scale2"))?)?,
                            ))
                        } else {
                            None
                        };
                        res.push(ResWeights {
                            conv1: self.conv::<E>(device, &format!("{r}.conv1.conv"), (channels, channels, 3))?,
                            conv2: self.conv::<E>(device, &format!("{r}.conv2.conv"), (channels, channels, 3))?,
                            shortcut: None,
                            noise_scales,
                        });
                    }
                    BlockWeights::Mid(res)
                }
                Block::Res { cin, cout } => BlockWeights::Res(Box::new(ResWeights {
                    conv1: self.conv::<E>(device, &format!("{p}.conv1.conv"), (cout, cin, 3))?,
                    conv2: self.conv::<E>(device, &format!("{p}.conv2.conv"), (cout, cout, 3))?,
                    shortcut: Some(Shortcut {
                        conv: self.conv::<E>(device, &format!("{p}.conv_shortcut"), (cout, cin, 1))?,
                        norm_weight: device.upload_as::<E>(&self.tensor(&format!("{p}.norm3.norm.weight"))?)?,
                        norm_bias: device.upload_as::<E>(&self.tensor(&format!("{p}.norm3.norm.bias"))?)?,
                    }),
                    noise_scales: None,
                })),
                Block::Upsample { cin, axes, reduction, .. } => {
                    let cout = axes.factor() * cin / reduction;
                    BlockWeights::Upsample(self.conv::<E>(device, &format!("{p}.conv.conv"), (cout, cin, 3))?)
                }
            });
        }
        let conv_out = self.conv::<E>(
            device,
            "decoder.conv_out.conv",
            (c.out_channels * c.patch_size.pow(2), c.head_channels(), 3),
        )?;
        Ok(DeviceWeights {
            conv_in,
            blocks,
            conv_out,
            mean: device.upload_as::<E>(&self.tensor("per_channel_statistics.mean-of-means")?)?,
            std: device.upload_as::<E>(&self.tensor("per_channel_statistics.std-of-means")?)?,
            strategy: device.conv_strategy(),
        })
    }

    /// The ada values `(1 + scale, shift)` of every timestep-conditioned norm at decode
    /// timestep `t`: per block, per resblock, `[(1+scale1, shift1), (1+scale2, shift2)]`;
    /// and the head's. Empty without timestep conditioning.
    pub(crate) fn ada(&self, t: f32) -> Result<Ada> {
        let c = &self.config;
        if !c.timestep_conditioning {
            return Ok(Ada::default());
        }
        let tau = f64::from(t) * f64::from(self.tensor("decoder.timestep_scale_multiplier")?[0]);
        let embedding = sinusoid(tau);
        let mut blocks = Vec::new();
        for (i, block) in c.blocks.iter().enumerate() {
            let p = format!("decoder.up_blocks.{i}");
            let Block::Mid { channels, layers, .. } = *block else {
                blocks.push(Vec::new());
                continue;
            };
            let emb = self.mlp(&format!("{p}.time_embedder"), &embedding)?;
            let mut per_res = Vec::new();
            for j in 0..layers {
                let table = self.tensor(&format!("{p}.res_blocks.{j}.scale_shift_table"))?;
                let row = |r: usize| -> Vec<f64> {
                    (0..channels).map(|k| f64::from(table[r * channels + k]) + emb[r * channels + k]).collect()
                };
                per_res.push([ada_pair(&row(1), &row(0)), ada_pair(&row(3), &row(2))]);
            }
            blocks.push(per_res);
        }
        let head = c.head_channels();
        let emb = self.mlp("decoder.last_time_embedder", &embedding)?;
        let table = self.tensor("decoder.last_scale_shift_table")?;
        let row = |r: usize| -> Vec<f64> { (0..head).map(|k| f64::from(table[r * head + k]) + emb[r * head + k]).collect() };
        Ok(Ada { blocks, head: Some(ada_pair(&row(1), &row(0))) })
    }

    /// `linear_2(SiLU(linear_1(x)))` of a timestep embedder, in f64.
    fn mlp(&self, prefix: &str, x: &[f64]) -> Result<Vec<f64>> {
        let p = format!("{prefix}.timestep_embedder");
        let linear = |x: &[f64], n: &str| -> Result<Vec<f64>> {
            let w = self.tensor(&format!("{p}.{n}.weight"))?;
            let b = self.tensor(&format!("{p}.{n}.bias"))?;
            Ok(b.iter()
                .enumerate()
                .map(|(o, &bias)| {
                    let row = &w[o * x.len()..(o + 1) * x.len()];
                    f64::from(bias) + row.iter().zip(x).map(|(&w, &v)| f64::from(w) * v).sum::<f64>()
                })
                .collect())
        };
        let hidden: Vec<f64> = linear(x, "linear_1")?.into_iter().map(|v| v / (1.0 + (-v).exp())).collect();
        linear(&hidden, "linear_2")
    }
}

/// A padding by name: `zeros`, `reflect` or `replicate`.
pub fn parse_padding(name: &str) -> Result<Padding> {
    config::parse_padding(&name.to_ascii_lowercase()).map_err(Error::config)
}

/// `(1 + scale, shift)` as f32.
fn ada_pair(scale: &[f64], shift: &[f64]) -> AdaPair {
    (scale.iter().map(|&s| (1.0 + s) as f32).collect(), shift.iter().map(|&s| s as f32).collect())
}

/// The 256-dimensional sinusoidal embedding of `tau`, cosines first.
fn sinusoid(tau: f64) -> Vec<f64> {
    let half = 128;
    let freqs: Vec<f64> = (0..half).map(|k| (-(10000f64.ln()) * k as f64 / half as f64).exp()).collect();
    freqs.iter().map(|f| (tau * f).cos()).chain(freqs.iter().map(|f| (tau * f).sin())).collect()
}

/// `(1 + scale, shift)` of one timestep-conditioned norm.
pub(crate) type AdaPair = (Vec<f32>, Vec<f32>);

/// Per-stream ada values on the host (see [`LtxVae::ada`]).
#[derive(Default)]
pub(crate) struct Ada {
    /// Per block, per resblock: the norms before conv1 and conv2.
    pub blocks: Vec<Vec<[AdaPair; 2]>>,
    pub head: Option<AdaPair>,
}

pub(crate) struct Shortcut {
    pub conv: ConvWeights,
    pub norm_weight: DeviceBuffer,
    pub norm_bias: DeviceBuffer,
}

pub(crate) struct ResWeights {
    pub conv1: ConvWeights,
    pub conv2: ConvWeights,
    pub shortcut: Option<Shortcut>,
    pub noise_scales: Option<(DeviceBuffer, DeviceBuffer)>,
}

pub(crate) enum BlockWeights {
    Mid(Vec<ResWeights>),
    Res(Box<ResWeights>),
    Upsample(ConvWeights),
}

/// A decoder's weights on one device.
pub(crate) struct DeviceWeights {
    pub conv_in: ConvWeights,
    pub blocks: Vec<BlockWeights>,
    pub conv_out: ConvWeights,
    pub mean: DeviceBuffer,
    pub std: DeviceBuffer,
    pub strategy: Strategy,
}

