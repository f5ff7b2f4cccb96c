//! ESRGAN-family upscalers: RRDBNet (ESRGAN, Real-ESRGAN x4plus/x2plus, ESRGAN+) and
//! SRVGGNetCompact (Real-ESRGAN's compact video models), detected from their weights.
//!
//! Weight names are normalised to one canonical description per architecture (the old
//! `model.N` ESRGAN layout, the 2019 ESRGAN layout and BasicSR's all map to [`RrdbConfig`]);
//! a file that is neither says what it looked like.

mod compact;
mod rrdb;

use std::sync::Arc;

use framestream_kernels::Element;
use framestream_kernels::conv::{ConvWeights, Strategy};

pub use compact::CompactConfig;
pub use rrdb::RrdbConfig;

use super::Precision;
use super::weights::WeightFile;
use crate::device::{Device, ModelKey, with_client};
use crate::error::{Error, Result};
use crate::model::with_element;

/// Bounds on what a file may describe, checked before anything is sized from it (released
/// models have 64 features, 3 image channels, 23 blocks and scale 4 at most).
const MAX_FEATURES: usize = 4096;
const MAX_IMAGE_CHANNELS: usize = 64;
const MAX_BLOCKS: usize = 1024;
const MAX_SCALE: usize = 16;

/// The network a weight file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Architecture {
    Rrdb(RrdbConfig),
    Compact(CompactConfig),
}

/// An upscaling model: its architecture and weights (on the host, uploaded per device).
#[derive(Clone)]
pub struct UpscaleModel {
    name: String,
    architecture: Architecture,
    weights: Arc<WeightFile>,
    /// Its weights in the devices' caches.
    key: Arc<ModelKey>,
}

impl std::fmt::Debug for UpscaleModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpscaleModel")
            .field("name", &self.name)
            .field("architecture", &self.architecture)
            .finish_non_exhaustive()
    }
}

/// Strips a prefix every tensor name carries (`module.` from DataParallel, `netG.`).
fn strip_common_prefix(file: &WeightFile) -> WeightFile {
    for prefix in ["module.", "netG."] {
        if file.names().all(|n| n.starts_with(prefix)) {
            return file.renamed(|n| Some(n[prefix.len()..].to_string()));
        }
    }
    file.clone()
}

impl UpscaleModel {
    /// Loads a `.safetensors` or `.pth` file and detects its architecture. Blocking (it
    /// reads the file): async code uses [`load_async`](Self::load_async).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Self::from_weights(&WeightFile::open(path.as_ref())?)
    }

    /// [`load`](Self::load) on a thread of its own.
    pub async fn load_async(path: impl Into<std::path::PathBuf>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("model loading", move || Self::load(path)).await
    }

    /// Detects the architecture of weights already read; the model is named after the file.
    pub fn from_weights(file: &WeightFile) -> Result<Self> {
        let path = file.path();
        let file = strip_common_prefix(file);
        // Compact is checked first: its keys are a subset of no RRDB layout.
        let (architecture, file) = if let Some(config) = CompactConfig::detect(&file)? {
            (Architecture::Compact(config), file)
        } else if let Some((config, canonical)) = RrdbConfig::detect(&file)? {
            (Architecture::Rrdb(config), canonical)
        } else {
            let mut names: Vec<&str> = file.names().take(6).collect();
            if file.names().count() > 6 {
                names.push("…");
            }
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: format!(
                    "not an ESRGAN or compact upscaler this build knows ({} tensors: {})",
                    file.names().count(),
                    names.join(", ")
                ),
            });
        };
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let model = Self { name, architecture, weights: Arc::new(file), key: ModelKey::new() };
        model.check_weights()?;
        Ok(model)
    }

    /// Reads every tensor once with its expected shape, so a bad file fails at load.
    fn check_weights(&self) -> Result<()> {
        match &self.architecture {
            Architecture::Rrdb(c) => c.check(&self.weights),
            Architecture::Compact(c) => c.check(&self.weights),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    /// Output size ÷ input size.
    pub fn scale(&self) -> usize {
        match &self.architecture {
            Architecture::Rrdb(c) => c.scale(),
            Architecture::Compact(c) => c.scale,
        }
    }

    pub fn in_channels(&self) -> usize {
        match &self.architecture {
            Architecture::Rrdb(c) => c.in_nc,
            Architecture::Compact(c) => c.in_nc,
        }
    }

    pub fn out_channels(&self) -> usize {
        match &self.architecture {
            Architecture::Rrdb(c) => c.out_nc,
            Architecture::Compact(c) => c.out_nc,
        }
    }

    /// Inputs are padded (by reflection, at the bottom and right) to a multiple of this and
    /// the output cropped back, as spandrel does: 4 for pixel-unshuffle models.
    pub fn size_multiple(&self) -> usize {
        match &self.architecture {
            Architecture::Rrdb(c) if c.unshuffle > 1 => 4,
            _ => 1,
        }
    }

    /// How far (input pixels) an output pixel sees: a tile margin at least this large gives
    /// exactly the whole-frame result.
    pub fn receptive_radius(&self) -> f64 {
        match &self.architecture {
            Architecture::Rrdb(c) => c.receptive_radius(),
            Architecture::Compact(c) => (c.convs + 2) as f64,
        }
    }

    /// Device bytes one forward pass over `n` inputs of `h × w` holds at its peak (f32), and
    /// the largest single buffer among them.
    pub fn forward_bytes(&self, n: usize, h: usize, w: usize) -> (usize, usize) {
        match &self.architecture {
            Architecture::Rrdb(c) => c.forward_bytes(n, h, w),
            Architecture::Compact(c) => c.forward_bytes(n, h, w),
        }
    }

    /// The model's weights on `device`, in f32 (see [`on_in`](Self::on_in)).
    pub fn on(&self, device: &Device) -> Result<Arc<DeviceModel>> {
        self.on_in(device, Precision::F32)
    }

    /// The model's weights on `device`, computing in `precision` (uploaded once per device
    /// and precision, on a stream of their own: they belong to the model, not to the
    /// pipeline that first asked). An error where the device lacks the type.
    pub fn on_in(&self, device: &Device, precision: Precision) -> Result<Arc<DeviceModel>> {
        with_element!(precision, E => self.upload::<E>(device))
    }

    fn upload<E: Element>(&self, device: &Device) -> Result<Arc<DeviceModel>> {
        let precision = Precision::of::<E>();
        Precision::ensure_supported::<E>(device, "upscale")?;
        device.model_weights(&self.key, precision, |device| {
            let network = match &self.architecture {
                Architecture::Rrdb(c) => Network::Rrdb(Box::new(c.upload::<E>(&self.weights, device)?)),
                Architecture::Compact(c) => Network::Compact(c.upload::<E>(&self.weights, device)?),
            };
            Ok(DeviceModel {
                network,
                strategy: device.conv_strategy(),
                precision,
                multiple: self.size_multiple(),
                scale: self.scale(),
                in_channels: self.in_channels(),
                out_channels: self.out_channels(),
            })
        })
    }
}

/// Uploads one 3×3 (or 1×1) convolution's weights, converted to `E`.
pub(crate) fn upload_conv<E: Element>(
    file: &WeightFile,
    device: &Device,
    prefix: &str,
    (cout, cin, k): (usize, usize, usize),
    bias: bool,
) -> Result<ConvWeights> {
    let w = file.tensor_shaped(&format!("{prefix}.weight"), &[cout, cin, k, k])?;
    let b = if bias { Some(file.tensor_shaped(&format!("{prefix}.bias"), &[cout])?) } else { None };
    device.check_buffer(w.data.len() * size_of::<E>(), &format!("the weights of {prefix}"))?;
    Ok(with_client!(device, client => {
        ConvWeights::upload::<_, E>(client, &w.data, b.as_ref().map(|b| &b.data[..]), None, (cout, cin, 1, k))
    }))
}

enum Network {
    Rrdb(Box<rrdb::RrdbWeights>),
    Compact(compact::CompactWeights),
}

/// A model's weights on one device, ready to run.
pub struct DeviceModel {
    network: Network,
    strategy: Strategy,
    precision: Precision,
    multiple: usize,
    scale: usize,
    in_channels: usize,
    out_channels: usize,
}

impl DeviceModel {
    /// The element type it computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Runs the network on `n` inputs `[n, h, w, in_nc]` (f32); returns
    /// `[n, h·s, w·s, out_nc]` (f32), not clamped. Sides that are not a multiple of the
    /// model's size multiple are padded by reflection and the output cropped back.
    pub fn forward(
        &self,
        device: &Device,
        input: &framestream_kernels::DeviceBuffer,
        dims: (usize, usize, usize),
    ) -> Result<framestream_kernels::DeviceBuffer> {
        with_element!(self.precision, E => self.forward_in::<E>(device, input, dims))
    }

    fn forward_in<E: Element>(
        &self,
        device: &Device,
        input: &framestream_kernels::DeviceBuffer,
        (n, h, w): (usize, usize, usize),
    ) -> Result<framestream_kernels::DeviceBuffer> {
        use framestream_kernels::layout::reflect_pad;
        use framestream_kernels::tile::crop;
        let m = self.multiple;
        let (ph, pw) = (h.next_multiple_of(m), w.next_multiple_of(m));
        if ph - h >= h || pw - w >= w {
            return Err(Error::shape(format!(
                "{w}x{h} is too small for this model (it pads to multiples of {m} by reflection)"
            )));
        }
        let c = self.in_channels;
        let f32_in = std::any::TypeId::of::<E>() == std::any::TypeId::of::<f32>();
        // In `E`, padded by reflection where needed (a crop of the whole frame converts).
        let converted = if f32_in {
            input.clone()
        } else {
            let converted = device.alloc_elems::<E>(n * h * w * c)?;
            with_client!(device, client => crop::<_, f32, E>(client, input, (n, h, w, c), (0, 0), (h, w), &converted));
            converted
        };
        let padded = if (ph, pw) == (h, w) {
            converted
        } else {
            let padded = device.alloc_elems::<E>(n * ph * pw * c)?;
            with_client!(device, client => reflect_pad::<_, E>(client, &converted, (n, h, w, c), (ph - h, pw - w), &padded));
            padded
        };
        let full = match &self.network {
            Network::Rrdb(net) => net.forward::<E>(device, &padded, (n, ph, pw), self.strategy)?,
            Network::Compact(net) => net.forward::<E>(device, &padded, (n, ph, pw), self.strategy)?,
        };
        if f32_in && (ph, pw) == (h, w) {
            return Ok(full);
        }
        // Back to f32, cropped to the frame.
        let (s, o) = (self.scale, self.out_channels);
        let out = device.alloc(n * h * s * w * s * o)?;
        with_client!(device, client => crop::<_, E, f32>(client, &full, (n, ph * s, pw * s, o), (0, 0), (h * s, w * s), &out));
        Ok(out)
    }
}

/// Where a 2-D convolution reads: `n` frames of `h × w`, `stride` channels per pixel.
pub(crate) struct Planes<'a> {
    pub buffer: &'a framestream_kernels::DeviceBuffer,
    pub stride: usize,
}

/// Runs a 2-D convolution over `n` frames (each its own batch item), in `E`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d<E: Element>(
    device: &Device,
    weights: &ConvWeights,
    input: Planes,
    (n, h, w): (usize, usize, usize),
    output: Planes,
    out_offset: usize,
    activation: framestream_kernels::conv::Activation,
    residual: Option<framestream_kernels::conv::Residual>,
    strategy: Strategy,
) {
    use framestream_kernels::conv::{ConvInput, ConvOutput, Padding, Sequence, conv};
    let conv_input = ConvInput {
        head: None,
        body: input.buffer,
        sequence: Sequence::plain(n),
        height: h,
        width: w,
        stride: input.stride,
    };
    let conv_output = ConvOutput { out: output.buffer, stride: output.stride, offset: out_offset, activation, residual };
    with_client!(device, client => {
        conv::<_, E>(client, weights, &conv_input, &conv_output, Padding::Zeros, strategy)
    });
}
