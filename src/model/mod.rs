//! Model weights and the networks built from them.

pub mod esrgan;
mod latent;
pub mod ltx;
pub mod wan;
pub(crate) mod streaming;
pub mod tiling;
mod pickle;
mod precision;
pub mod weights;

pub use latent::Latent;
pub use precision::Precision;
pub(crate) use precision::with_element;
pub use weights::{Tensor, WeightFile, save_safetensors};

use std::path::Path;

use crate::error::{Error, Result};

/// An error about the weight file at `path`.
pub(crate) fn weights_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Weights { path: path.to_path_buf(), message: message.into() }
}

/// `407 M`, `2.3 M`, `13 k`: a count for people.
pub(crate) fn count(n: usize) -> String {
    match n {
        n if n >= 10_000_000 => format!("{} M", (n + 500_000) / 1_000_000),
        n if n >= 1_000_000 => format!("{:.1} M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{} k", (n + 500) / 1000),
        n => n.to_string(),
    }
}

/// A video VAE decoder of any family framestream decodes, told apart by its tensors.
#[derive(Clone, Debug)]
pub enum VideoVae {
    Ltx(ltx::LtxVae),
    Wan(wan::WanVae),
}

impl VideoVae {
    /// Loads a VAE file or diffusers `vae/` folder of either family (see [`ltx::LtxVae::load`]
    /// and [`wan::WanVae::load`]). Blocking: async code uses [`load_async`](Self::load_async).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let weights = if path.is_dir() { path.join("diffusion_pytorch_model.safetensors") } else { path.to_path_buf() };
        if weights.is_file() && wan::is_wan(&WeightFile::open(&weights)?) {
            Ok(Self::Wan(wan::WanVae::load(path)?))
        } else {
            Ok(Self::Ltx(ltx::LtxVae::load(path)?))
        }
    }

    /// [`load`](Self::load) on a thread of its own.
    pub async fn load_async(path: impl Into<std::path::PathBuf>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("model loading", move || Self::load(path)).await
    }
}
