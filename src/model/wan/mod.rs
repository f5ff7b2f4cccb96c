//! The Wan VAE decoder — Wan 2.1 (also used by Wan 2.2 A14B) and Wan 2.2 (TI2V-5B): official
//! `.safetensors` and `.pth` files as ComfyUI loads them and diffusers `AutoencoderKLWan`
//! folders, and a streaming decoder that turns a latent into frames chunk by chunk (see
//! [`crate::source::WanVaeDecode`]). The streaming machinery is the one the LTX decoder uses.

mod config;
mod decoder;
mod names;

use std::path::Path;
use std::sync::Arc;

use framestream_kernels::conv::{ConvWeights, Strategy};
use framestream_kernels::{DeviceBuffer, Element};

pub use config::{Resample, ResBlock, UpBlock, WanConfig, WanVersion};
pub(crate) use decoder::pipeline;

use crate::device::{Device, ModelKey, with_client};
use crate::error::Result;
use crate::model::{Precision, count, open_vae, weights_error, with_element};
use crate::model::weights::WeightFile;

/// A Wan VAE decoder: its architecture and weights (memory-mapped; uploaded once per device).
#[derive(Clone)]
pub struct WanVae {
    name: String,
    config: WanConfig,
    /// Official names.
    weights: Arc<WeightFile>,
    key: Arc<ModelKey>,
}

impl std::fmt::Debug for WanVae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WanVae").field("name", &self.name).field("config", &self.config).finish_non_exhaustive()
    }
}

/// Whether `file` holds a Wan VAE decoder, in the official or diffusers naming.
pub fn is_wan(file: &WeightFile) -> bool {
    config::is_official(file) || names::is_diffusers(file)
}

impl WanVae {
    /// [`load`](Self::load) on a thread of its own.
    pub async fn load_async(path: impl Into<std::path::PathBuf>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("model loading", move || Self::load(path)).await
    }

    /// Loads a decoder from a `.safetensors` or `.pth` file (official names, as
    /// `Wan2.1_VAE.pth` and `Wan2.2_VAE.pth` and ComfyUI's copies hold them, or diffusers
    /// names) or a diffusers `vae/` folder; 2.1 or 2.2 is told from the tensors. Blocking (it
    /// reads the file): async code uses [`load_async`](Self::load_async).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::from_file(path, open_vae(path)?.0)
    }

    /// A decoder from weights already open (or held in memory).
    pub fn from_weights(file: WeightFile) -> Result<Self> {
        let path = file.path().to_path_buf();
        Self::from_file(&path, file)
    }

    /// A decoder from `file`, opened from `path`.
    pub(crate) fn from_file(path: &Path, file: WeightFile) -> Result<Self> {
        let file = if names::is_diffusers(&file) { names::diffusers_to_official(&file) } else { file };
        if !config::is_official(&file) {
            let found: Vec<&str> = file.names().take(4).collect();
            return Err(weights_error(
                path,
                format!(
                    "not a Wan VAE: no decoder.middle.0.residual.0.gamma (official names) nor \
                     decoder.mid_block.resnets.0.norm1.gamma (diffusers names) among {} tensors ({}…)",
                    file.names().count(),
                    found.join(", ")
                ),
            ));
        }
        let config = WanConfig::detect(&file).map_err(|m| weights_error(path, m))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let vae = Self { name, config, weights: Arc::new(file), key: ModelKey::new() };
        vae.check_shapes(path)?;
        Ok(vae)
    }

    /// Every tensor the decoder reads is present with its shape.
    fn check_shapes(&self, path: &Path) -> Result<()> {
        for (name, shape) in self.config.tensors() {
            match self.weights.shape(&name) {
                Some(found) if found == shape.as_slice() => {}
                Some(found) => {
                    return Err(weights_error(
                        path,
                        format!("tensor {name} has shape {found:?}, expected {shape:?} for the {} decoder its tensors describe", self.config.version_name()),
                    ));
                }
                None => return Err(weights_error(path, format!("missing tensor {name} (expected shape {shape:?})"))),
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &WanConfig {
        &self.config
    }

    /// Parameters of the decoder and `conv2` (the encoder's are not read).
    pub fn parameters(&self) -> usize {
        self.config.parameters()
    }

    /// What was recognised, for people: "Wan 2.1 VAE, 73 M parameters".
    pub fn description(&self) -> String {
        format!("{} VAE, {} parameters", self.config.version_name(), count(self.parameters()))
    }

    /// Uploads the weights to `device` now, for decodes in `precision` (else the first such
    /// decode on it does).
    pub fn upload_to(&self, device: &Device, precision: Precision) -> Result<()> {
        with_element!(precision, E => self.on::<E>(device).map(drop))
    }

    /// The weights on `device` as `E`, uploaded once per device and type.
    pub(crate) fn on<E: Element>(&self, device: &Device) -> Result<Arc<DeviceWeights>> {
        Precision::ensure_supported::<E>(device, "decode")?;
        device.model_weights(&self.key, Precision::of::<E>(), |device| self.upload_weights::<E>(device))
    }

    fn tensor(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.weights.tensor(name)?.data)
    }

    /// `name.weight` and `name.bias` of a convolution with `kt` time and `k` space taps.
    fn conv<E: Element>(&self, device: &Device, name: &str, (cout, cin, kt, k): (usize, usize, usize, usize)) -> Result<ConvWeights> {
        let w = self.tensor(&format!("{name}.weight"))?;
        let b = self.tensor(&format!("{name}.bias"))?;
        device.check_buffer(kt * k * k * cin * size_of::<E>(), &format!("one output channel of {name}"))?;
        Ok(with_client!(device, client => ConvWeights::upload::<_, E>(client, &w, Some(&b), None, (cout, cin, kt, k))))
    }

    fn gain<E: Element>(&self, device: &Device, name: &str) -> Result<DeviceBuffer> {
        device.upload_as::<E>(&self.tensor(name)?)
    }

    fn res<E: Element>(&self, device: &Device, r: &ResBlock) -> Result<ResWeights> {
        let p = &r.prefix;
        Ok(ResWeights {
            gain1: self.gain::<E>(device, &format!("{p}.residual.0.gamma"))?,
            conv1: self.conv::<E>(device, &format!("{p}.residual.2"), (r.cout, r.cin, 3, 3))?,
            gain2: self.gain::<E>(device, &format!("{p}.residual.3.gamma"))?,
            conv2: self.conv::<E>(device, &format!("{p}.residual.6"), (r.cout, r.cout, 3, 3))?,
            shortcut: (r.cin != r.cout)
                .then(|| self.conv::<E>(device, &format!("{p}.shortcut"), (r.cout, r.cin, 1, 1)))
                .transpose()?,
        })
    }

    fn upload_weights<E: Element>(&self, device: &Device) -> Result<DeviceWeights> {
        let c = &self.config;
        let (z, w) = (c.latent_channels, c.width);
        let middle = |j: usize| ResBlock { prefix: format!("decoder.middle.{j}"), cin: w, cout: w };
        let mut blocks = Vec::new();
        for block in &c.blocks {
            let res = block.res.iter().map(|r| self.res::<E>(device, r)).collect::<Result<_>>()?;
            let resample = match &block.resample {
                Some(r) => Some(ResampleWeights {
                    time_conv: r
                        .time
                        .then(|| self.conv::<E>(device, &format!("{}.time_conv", r.prefix), (2 * r.cin, r.cin, 3, 1)))
                        .transpose()?,
                    conv: self.conv::<E>(device, &format!("{}.resample.1", r.prefix), (r.cout, r.cin, 1, 3))?,
                }),
                None => None,
            };
            blocks.push(BlockWeights { res, resample });
        }
        Ok(DeviceWeights {
            conv2: self.conv::<E>(device, "conv2", (z, z, 1, 1))?,
            conv1: self.conv::<E>(device, "decoder.conv1", (w, z, 3, 3))?,
            middle: [self.res::<E>(device, &middle(0))?, self.res::<E>(device, &middle(2))?],
            attention: AttentionWeights {
                gain: self.gain::<E>(device, "decoder.middle.1.norm.gamma")?,
                qkv: self.conv::<E>(device, "decoder.middle.1.to_qkv", (3 * w, w, 1, 1))?,
                proj: self.conv::<E>(device, "decoder.middle.1.proj", (w, w, 1, 1))?,
            },
            blocks,
            head_gain: self.gain::<E>(device, "decoder.head.0.gamma")?,
            head: self.conv::<E>(device, "decoder.head.2", (3 * c.patch_size * c.patch_size, c.head_channels, 3, 3))?,
            strategy: device.conv_strategy(),
        })
    }
}

pub(crate) struct ResWeights {
    pub gain1: DeviceBuffer,
    pub conv1: ConvWeights,
    pub gain2: DeviceBuffer,
    pub conv2: ConvWeights,
    pub shortcut: Option<ConvWeights>,
}

pub(crate) struct AttentionWeights {
    pub gain: DeviceBuffer,
    pub qkv: ConvWeights,
    pub proj: ConvWeights,
}

pub(crate) struct ResampleWeights {
    pub time_conv: Option<ConvWeights>,
    /// The 3×3 convolution after nearest ×2, one frame at a time.
    pub conv: ConvWeights,
}

pub(crate) struct BlockWeights {
    pub res: Vec<ResWeights>,
    pub resample: Option<ResampleWeights>,
}

/// A decoder's weights on one device.
pub(crate) struct DeviceWeights {
    pub conv2: ConvWeights,
    pub conv1: ConvWeights,
    /// `decoder.middle.0` and `.2`.
    pub middle: [ResWeights; 2],
    pub attention: AttentionWeights,
    pub blocks: Vec<BlockWeights>,
    pub head_gain: DeviceBuffer,
    pub head: ConvWeights,
    pub strategy: Strategy,
}
