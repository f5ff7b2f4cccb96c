//! RIFE 4.x (IFNet): frame interpolation by a coarse-to-fine pyramid of flow blocks.
//!
//! Every layout released since 4.5 (residual flow blocks) is recognised from its tensors:
//! 4.5/4.6 (no feature encoder; each block's mask adds to the last), 4.7–4.12 and 4.13–4.20,
//! 4.24 (a feature encoder, `encode.*`, whose features are warped into every block; 4.14.lite's
//! residual convolutions in two groups), 4.21–4.23 (blocks also pass 8 feature channels on) and
//! 4.25/4.26 (five blocks, a finer start; 4.25.lite's pyramid ends 4, 1).
//! Weights come from Practical-RIFE's `flownet.pkl` (`module.` prefixes), `.pth` or
//! `.safetensors`; training-only tensors (`teacher.*`, `caltime.*`) are ignored.

mod network;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use framestream_kernels::Element;

pub use network::{DeviceRife, Prepared};

use super::weights::WeightFile;
use super::{Precision, weights_error, with_element};
use crate::device::{Device, ModelKey};
use crate::error::Result;

/// Bounds on what a file may describe (released models: widths up to 192, 8 features).
const MAX_WIDTH: usize = 1024;
const MAX_CHANNELS: usize = 256;
/// Residual convolutions per block in every release.
const RESIDUALS: usize = 8;

/// How a layer of the feature encoder convolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// 3×3, stride 2, padding 1.
    Strided,
    /// 3×3, stride 1, padding 1.
    Plain,
    /// 4×4 transposed, stride 2, padding 1.
    Transposed,
}

/// One layer of the feature encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderLayer {
    /// Its tensors' prefix (`encode.cnn0`, `encode.0`, …).
    pub prefix: String,
    pub kind: LayerKind,
    pub cin: usize,
    pub cout: usize,
    /// Followed by LeakyReLU(0.2).
    pub leaky: bool,
}

/// A recognised IFNet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RifeConfig {
    /// Input channels and width of each flow block, coarsest first.
    pub blocks: Vec<(usize, usize)>,
    /// Channels after each block's last (transposed) convolution and pixel shuffle: flow 4,
    /// mask 1, then features passed on or unused.
    pub outputs: usize,
    /// Feature channels each block passes to the next.
    pub passed: usize,
    /// The encoder run on each frame, whose output is warped into every block.
    pub encoder: Vec<EncoderLayer>,
    /// Each block's mask adds to the running one (4.5/4.6) instead of replacing it.
    pub mask_accumulates: bool,
    /// Channel groups of the residual convolutions (2 in 4.14.lite, else 1).
    pub groups: usize,
    /// Each block's downscale at pyramid scale 1, coarsest first.
    pub pyramid: Vec<usize>,
}

impl RifeConfig {
    /// Channels of the encoder's output (0 without one).
    pub fn features(&self) -> usize {
        self.encoder.last().map_or(0, |l| l.cout)
    }

    /// Input channels of the first block: both frames, both frames' features, the timestep.
    fn first_inputs(&self) -> usize {
        7 + 2 * self.features()
    }

    /// Input channels of the later blocks: warped frames and features, the timestep, the
    /// mask, the passed features and the flow.
    fn later_inputs(&self) -> usize {
        self.first_inputs() + 1 + self.passed + 4
    }

    /// The released pyramid of `blocks` blocks whose last is `last_width` wide: 8, 4, 2, 1;
    /// 16, 8, 4, 2, 1 for five blocks, but 32, 16, 8, 4, 1 for 4.25.lite (told by its 24-wide
    /// last block).
    fn released_pyramid(blocks: usize, last_width: usize) -> Vec<usize> {
        match (blocks, last_width) {
            (5, 24) => vec![32, 16, 8, 4, 1],
            _ => (0..blocks).rev().map(|i| 1 << i).collect(),
        }
    }

    /// Frames are padded to a multiple of this at scale 1: the coarsest block's downscale
    /// and its two stride-2 convolutions.
    pub fn multiple(&self) -> usize {
        4 * self.pyramid[0]
    }

    /// The release family, for messages.
    pub fn family(&self) -> &'static str {
        match (self.blocks.len(), self.features(), self.passed) {
            (5, ..) => "RIFE 4.25/4.26",
            (_, 0, _) => "RIFE 4.5/4.6",
            (_, _, 0) => "RIFE 4.7–4.20",
            _ => "RIFE 4.21–4.23",
        }
    }

    /// A released layout — `"4.6"`, `"4.18"` (4.13–4.20, 4.24), `"4.22"` (4.21–4.23) or
    /// `"4.26"` (4.25, 4.26) — at its released widths; `None` for another name.
    pub fn released(version: &str) -> Option<Self> {
        let head = |hidden: usize, out: usize| {
            let layer = |i: usize, kind, cin, cout, leaky| EncoderLayer { prefix: format!("encode.cnn{i}"), kind, cin, cout, leaky };
            vec![
                layer(0, LayerKind::Strided, 3, hidden, true),
                layer(1, LayerKind::Plain, hidden, hidden, true),
                layer(2, LayerKind::Plain, hidden, hidden, true),
                layer(3, LayerKind::Transposed, hidden, out, false),
            ]
        };
        let (widths, encoder, outputs, passed): (&[usize], _, _, _) = match version {
            "4.6" => (&[192, 128, 96, 64], Vec::new(), 6, 0),
            "4.18" => (&[192, 128, 96, 64], head(32, 8), 6, 0),
            "4.22" => (&[256, 192, 96, 48], head(32, 8), 13, 8),
            "4.26" => (&[192, 128, 96, 64, 32], head(16, 4), 13, 8),
            _ => return None,
        };
        let pyramid = Self::released_pyramid(widths.len(), widths[widths.len() - 1]);
        let mut config =
            Self { blocks: Vec::new(), outputs, passed, mask_accumulates: encoder.is_empty(), encoder, groups: 1, pyramid };
        let (first, later) = (config.first_inputs(), config.later_inputs());
        config.blocks = widths.iter().enumerate().map(|(i, &c)| (if i == 0 { first } else { later }, c)).collect();
        Some(config)
    }

    /// Recognises an IFNet from its tensor names and shapes (`module.` already stripped).
    pub fn detect(file: &WeightFile) -> Result<Self> {
        let bad = |message: String| weights_error(file.path(), message);
        if !file.contains("block0.conv0.0.0.weight") {
            let mut names: Vec<&str> = file.names().take(6).collect();
            if file.names().count() > 6 {
                names.push("…");
            }
            return Err(bad(format!("not a RIFE (IFNet) model: no block0.conv0.0.0.weight ({})", names.join(", "))));
        }
        if !file.contains("block0.convblock.0.beta") {
            let release = if file.contains("block0.lastconv.weight") { "RIFE 4.0–4.4" } else { "before RIFE 4.5" };
            return Err(bad(format!("a model of {release} (blocks without residual convolutions): not supported; use 4.5 or later")));
        }
        let count = (0..).take_while(|i| file.contains(&format!("block{i}.conv0.0.0.weight"))).count();
        if !matches!(count, 4 | 5) {
            return Err(bad(format!("a RIFE model of {count} blocks (released ones have 4 or 5)")));
        }
        if file.has_prefix(&format!("block{count}.")) {
            return Err(bad(format!("block{count} has tensors but no block{count}.conv0.0.0.weight")));
        }
        let shape = |name: &str, rank: usize| -> Result<Vec<usize>> {
            match file.shape(name) {
                Some(s) if s.len() == rank && s.iter().all(|&d| d > 0) => Ok(s.to_vec()),
                Some(s) => Err(bad(format!("tensor {name} has shape {s:?}"))),
                None => Err(bad(format!("missing tensor {name}"))),
            }
        };
        let encoder = Self::detect_encoder(file, &shape)?;
        let mut blocks = Vec::with_capacity(count);
        let mut groups = 1;
        for i in 0..count {
            let first = shape(&format!("block{i}.conv0.0.0.weight"), 4)?;
            let residual = shape(&format!("block{i}.convblock.0.conv.weight"), 4)?;
            let width = residual[0];
            if residual[1] == 0 || width % residual[1] != 0 || !matches!(width / residual[1], 1 | 2) {
                return Err(bad(format!("block{i}.convblock.0.conv.weight {residual:?}: residual convolutions of 1 or 2 groups")));
            }
            if i > 0 && width / residual[1] != groups {
                return Err(bad(format!("block{i}'s residual convolutions have other groups than block0's")));
            }
            groups = width / residual[1];
            if !(2..=MAX_WIDTH).contains(&width) || width % 2 != 0 || first[0] != width / 2 {
                return Err(bad(format!(
                    "block{i}: width {width} with a first convolution to {} channels (an even width up to \
                     {MAX_WIDTH}, halved first)",
                    first[0]
                )));
            }
            blocks.push((first[1], width));
        }
        let last = shape("block0.lastconv.0.weight", 4)?;
        if last[1] % 4 != 0 || !(20..=4 * MAX_CHANNELS).contains(&last[1]) {
            return Err(bad(format!("block0.lastconv.0.weight {last:?}: expected 4 × (5 or more) outputs")));
        }
        let outputs = last[1] / 4;
        let features = encoder.last().map_or(0, |l| l.cout);
        let pyramid = Self::released_pyramid(count, blocks[count - 1].1);
        let mut config = Self { blocks, outputs, passed: 0, encoder, mask_accumulates: features == 0, groups, pyramid };
        let later = config.blocks[1].0;
        let passed = later.checked_sub(config.later_inputs()).filter(|&p| p <= outputs - 5);
        config.passed = passed.ok_or_else(|| {
            bad(format!(
                "block1 reads {later} channels; a RIFE block after the first reads {} (frames, features, \
                 timestep, mask, flow) and at most {} passed features",
                config.later_inputs(),
                outputs - 5
            ))
        })?;
        if config.blocks[0].0 != config.first_inputs() {
            return Err(bad(format!(
                "block0 reads {} channels, expected {} (two frames{}, the timestep)",
                config.blocks[0].0,
                config.first_inputs(),
                if features > 0 { format!(", their {features} feature channels each") } else { String::new() }
            )));
        }
        if let Some(i) = (1..count).find(|&i| config.blocks[i].0 != later) {
            return Err(bad(format!("block{i} reads {} channels where block1 reads {later}", config.blocks[i].0)));
        }
        config.check(file)?;
        Ok(config)
    }

    /// The feature encoder: `encode.cnn0..3` (4.13+), `encode.{0,2,4,6}` (4.10–4.12) or
    /// `encode.{0,1}` (4.7–4.9); none before 4.7.
    fn detect_encoder(file: &WeightFile, shape: &dyn Fn(&str, usize) -> Result<Vec<usize>>) -> Result<Vec<EncoderLayer>> {
        use LayerKind::*;
        let layout: &[(&str, LayerKind, bool)] = if file.contains("encode.cnn0.weight") {
            &[("encode.cnn0", Strided, true), ("encode.cnn1", Plain, true), ("encode.cnn2", Plain, true), ("encode.cnn3", Transposed, false)]
        } else if file.contains("encode.6.weight") {
            &[("encode.0", Strided, true), ("encode.2", Plain, true), ("encode.4", Plain, true), ("encode.6", Transposed, false)]
        } else if file.contains("encode.1.weight") {
            &[("encode.0", Strided, false), ("encode.1", Transposed, false)]
        } else if file.has_prefix("encode.") {
            return Err(weights_error(file.path(), "a feature encoder (encode.*) of a layout this build does not know"));
        } else {
            return Ok(Vec::new());
        };
        let mut layers = Vec::new();
        let mut cin = 3;
        for &(prefix, kind, leaky) in layout {
            let s = shape(&format!("{prefix}.weight"), 4)?;
            // Transposed convolutions store [in, out, k, k].
            let (i, o) = if kind == Transposed { (s[0], s[1]) } else { (s[1], s[0]) };
            if i != cin || o > MAX_CHANNELS {
                return Err(weights_error(
                    file.path(),
                    format!("{prefix}.weight {s:?}: expected {cin} input channels and at most {MAX_CHANNELS} outputs"),
                ));
            }
            layers.push(EncoderLayer { prefix: prefix.to_string(), kind, cin, cout: o, leaky });
            cin = o;
        }
        Ok(layers)
    }

    /// Every tensor the network reads, with its shape.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut add = |name: String, shape: Vec<usize>| out.push((name, shape));
        for layer in &self.encoder {
            let k = if layer.kind == LayerKind::Transposed { 4 } else { 3 };
            let w = if layer.kind == LayerKind::Transposed { vec![layer.cin, layer.cout, k, k] } else { vec![layer.cout, layer.cin, k, k] };
            add(format!("{}.weight", layer.prefix), w);
            add(format!("{}.bias", layer.prefix), vec![layer.cout]);
        }
        for (i, &(cin, c)) in self.blocks.iter().enumerate() {
            let p = format!("block{i}");
            add(format!("{p}.conv0.0.0.weight"), vec![c / 2, cin, 3, 3]);
            add(format!("{p}.conv0.0.0.bias"), vec![c / 2]);
            add(format!("{p}.conv0.1.0.weight"), vec![c, c / 2, 3, 3]);
            add(format!("{p}.conv0.1.0.bias"), vec![c]);
            for j in 0..RESIDUALS {
                add(format!("{p}.convblock.{j}.conv.weight"), vec![c, c / self.groups, 3, 3]);
                add(format!("{p}.convblock.{j}.conv.bias"), vec![c]);
                add(format!("{p}.convblock.{j}.beta"), vec![1, c, 1, 1]);
            }
            add(format!("{p}.lastconv.0.weight"), vec![c, 4 * self.outputs, 4, 4]);
            add(format!("{p}.lastconv.0.bias"), vec![4 * self.outputs]);
        }
        out
    }

    /// Checks every tensor's shape, so a bad file fails at load.
    fn check(&self, file: &WeightFile) -> Result<()> {
        for (name, shape) in self.tensors() {
            match file.shape(&name) {
                Some(found) if found == shape.as_slice() => {}
                Some(found) => return Err(weights_error(file.path(), format!("tensor {name} has shape {found:?}, expected {shape:?}"))),
                None => return Err(weights_error(file.path(), format!("missing tensor {name} (expected shape {shape:?})"))),
            }
        }
        Ok(())
    }
}

/// A RIFE model: its layout and weights (on the host, uploaded per device).
#[derive(Clone)]
pub struct RifeModel {
    name: String,
    config: RifeConfig,
    weights: Arc<WeightFile>,
    key: Arc<ModelKey>,
}

impl std::fmt::Debug for RifeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RifeModel").field("name", &self.name).field("config", &self.config).finish_non_exhaustive()
    }
}

impl RifeModel {
    /// Loads a `flownet.pkl`, `.pth` or `.safetensors` file and recognises its layout.
    /// Blocking (it reads the file): async code uses [`load_async`](Self::load_async).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_weights(&WeightFile::open(path.as_ref())?)
    }

    /// [`load`](Self::load) on a thread of its own.
    pub async fn load_async(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("model loading", move || Self::load(path)).await
    }

    /// Recognises weights already read; the model is named after the file.
    pub fn from_weights(file: &WeightFile) -> Result<Self> {
        // Released files were saved from DistributedDataParallel; training-only parts dropped.
        let prefixed = file.names().next().is_some() && file.names().all(|n| n.starts_with("module."));
        let file = file.renamed(|n| {
            let n = if prefixed { &n["module.".len()..] } else { n };
            (!(n.starts_with("teacher.") || n.starts_with("caltime."))).then(|| n.to_string())
        });
        let config = RifeConfig::detect(&file)?;
        let name = file.path().file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Self { name, config, weights: Arc::new(file), key: ModelKey::new() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &RifeConfig {
        &self.config
    }

    /// Frames are padded (zeros, bottom and right) to a multiple of this at pyramid scale
    /// `scale`, and the results cropped back.
    pub fn size_multiple(&self, scale: f64) -> usize {
        let m = self.config.multiple();
        if scale < 1.0 { (m as f64 / scale).round() as usize } else { m }
    }

    /// The model's weights on `device`, computing in `precision` (uploaded once per device
    /// and precision). An error where the device lacks the type.
    pub fn on_in(&self, device: &Device, precision: Precision) -> Result<Arc<DeviceRife>> {
        with_element!(precision, E => self.upload::<E>(device))
    }

    fn upload<E: Element>(&self, device: &Device) -> Result<Arc<DeviceRife>> {
        Precision::ensure_supported::<E>(device, "interpolation")?;
        device.model_weights(&self.key, Precision::of::<E>(), |device| {
            DeviceRife::upload::<E>(&self.config, &self.weights, device)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of bf16 zeros with these tensors, in memory.
    fn zeros(tensors: &[(String, Vec<usize>)]) -> WeightFile {
        let mut header = serde_json::Map::new();
        let mut offset = 0;
        for (name, shape) in tensors {
            let bytes = 2 * shape.iter().product::<usize>();
            header.insert(name.clone(), serde_json::json!({ "dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes] }));
            offset += bytes;
        }
        let header = serde_json::Value::Object(header).to_string().into_bytes();
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend(header);
        file.resize(file.len() + offset, 0);
        WeightFile::from_bytes("released.safetensors", file).unwrap()
    }

    #[test]
    fn released_layouts_are_recognised_from_their_tensors() {
        for (version, family, multiple) in
            [("4.6", "RIFE 4.5/4.6", 32), ("4.18", "RIFE 4.7–4.20", 32), ("4.22", "RIFE 4.21–4.23", 32), ("4.26", "RIFE 4.25/4.26", 64)]
        {
            let config = RifeConfig::released(version).unwrap();
            assert_eq!(RifeConfig::detect(&zeros(&config.tensors())).unwrap(), config, "{version}");
            assert_eq!((config.family(), config.multiple()), (family, multiple), "{version}");
        }
        assert_eq!(RifeConfig::released("4.26").unwrap().pyramid, [16, 8, 4, 2, 1]);
        assert!(RifeConfig::released("3.9").is_none());
        // 4.25.lite: a 24-wide last block and a pyramid ending in 4, 1.
        let mut lite = RifeConfig::released("4.26").unwrap();
        lite.blocks[4].1 = 24;
        lite.pyramid = vec![32, 16, 8, 4, 1];
        assert_eq!(RifeConfig::detect(&zeros(&lite.tensors())).unwrap(), lite);
        assert_eq!(lite.multiple(), 128);
        // 4.14.lite: residual convolutions of two groups.
        let mut grouped = RifeConfig::released("4.18").unwrap();
        grouped.groups = 2;
        assert_eq!(RifeConfig::detect(&zeros(&grouped.tensors())).unwrap(), grouped);
    }
}
