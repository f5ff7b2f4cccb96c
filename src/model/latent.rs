//! Video latents: ComfyUI `.latent` files and plain `.safetensors` files holding one 5-D
//! tensor `[batch, channels, frames, height, width]`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::weights::WeightFile;

/// One video's latent, channels last: `[frames, height, width, channels]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Latent {
    pub(crate) data: Vec<f32>,
    pub(crate) frames: usize,
    pub(crate) height: usize,
    pub(crate) width: usize,
    pub(crate) channels: usize,
}

/// ComfyUI's scale of pre-versioning (SD1) latent files, undone on load.
const LEGACY_SCALE: f32 = 0.18215;

impl Latent {
    /// [`open`](Self::open) on a thread of its own.
    pub async fn open_async(path: impl Into<std::path::PathBuf>, batch_index: Option<usize>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("latent loading", move || Self::open(path, batch_index)).await
    }

    /// Reads a latent file: ComfyUI's `.latent` (tensor `latent_tensor`; files without the
    /// `latent_format_version_0` marker are legacy and divided by 0.18215, as ComfyUI does),
    /// or a `.safetensors` file with exactly one 5-D tensor. A batch of several latents needs
    /// `batch_index`. Blocking (it reads the file): async code uses
    /// [`open_async`](Self::open_async).
    pub fn open(path: impl AsRef<Path>, batch_index: Option<usize>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |message: String| Error::Latent { path: path.to_path_buf(), message };
        // The file is a latent, not weights: say so in the error's kind.
        let as_latent = |e: Error| match e {
            Error::Weights { message, .. } => bad(message),
            other => other,
        };
        let file = WeightFile::open(path).map_err(as_latent)?;
        let (name, legacy) = if file.contains("latent_tensor") {
            ("latent_tensor".to_string(), !file.contains("latent_format_version_0"))
        } else {
            let five_d: Vec<&str> = file.names().filter(|n| file.shape(n).is_some_and(|s| s.len() == 5)).collect();
            match five_d.as_slice() {
                [one] => (one.to_string(), false),
                [] => {
                    let found: Vec<String> = file
                        .names()
                        .take(4)
                        .map(|n| format!("{n} {:?}", file.shape(n).unwrap_or_default()))
                        .collect();
                    return Err(bad(format!(
                        "no latent_tensor and no 5-D tensor [batch, channels, frames, height, width] \
                         (found {})",
                        if found.is_empty() { "no tensors".into() } else { found.join(", ") }
                    )));
                }
                many => return Err(bad(format!("several 5-D tensors ({}): which is the latent?", many.join(", ")))),
            }
        };
        let tensor = file.tensor(&name).map_err(as_latent)?;
        let mut latent = Self::from_tensor(&tensor.shape, &tensor.data, batch_index)
            .map_err(|e| bad(format!("{name}: {}", e.to_string().trim_start_matches("invalid shape: "))))?;
        if legacy {
            latent.data.iter_mut().for_each(|v| *v /= LEGACY_SCALE);
        }
        Ok(latent)
    }

    /// A latent from a `[batch, channels, frames, height, width]` tensor (row-major); item
    /// `batch_index` of a batch (required when the batch holds more than one).
    pub fn from_tensor(shape: &[usize], data: &[f32], batch_index: Option<usize>) -> Result<Self> {
        let &[batch, channels, frames, height, width] = shape else {
            return Err(Error::shape(format!(
                "a latent of shape {shape:?}: expected 5 dimensions [batch, channels, frames, height, width]"
            )));
        };
        if shape.contains(&0) {
            return Err(Error::shape(format!("a latent of shape {shape:?} is empty")));
        }
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::shape(format!("{} values for a latent of shape {shape:?}", data.len())));
        }
        let item = match batch_index {
            Some(i) if i < batch => i,
            Some(i) => return Err(Error::shape(format!("batch index {i} of a batch of {batch}"))),
            None if batch == 1 => 0,
            None => {
                return Err(Error::shape(format!(
                    "a batch of {batch} latents: choose one with a batch index (0..{batch})"
                )));
            }
        };
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::shape(format!("a non-finite value at element {i} of the latent")));
        }
        let plane = frames * height * width;
        let source = &data[item * channels * plane..(item + 1) * channels * plane];
        let mut out = vec![0.0; channels * plane];
        for c in 0..channels {
            for (p, &v) in source[c * plane..(c + 1) * plane].iter().enumerate() {
                out[p * channels + c] = v;
            }
        }
        Ok(Self { data: out, frames, height, width, channels })
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn height(&self) -> usize {
        self.height
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
}
