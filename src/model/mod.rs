//! Model weights and the networks built from them.

pub mod esrgan;
mod latent;
pub mod ltx;
pub mod wan;
pub(crate) mod streaming;
pub mod tiling;
mod pickle;
mod precision;
pub mod rife;
pub mod weights;

pub use latent::Latent;
pub use precision::Precision;
pub(crate) use precision::with_element;
pub use weights::{Tensor, WeightFile, save_safetensors};

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An error about the weight file at `path`.
pub(crate) fn weights_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Weights { path: path.to_path_buf(), message: message.into() }
}

/// The weights of a VAE file or diffusers `vae/` folder, and the `config.json` in the folder
/// or beside the file, when there is one.
pub(crate) fn open_vae(path: &Path) -> Result<(WeightFile, Option<PathBuf>)> {
    let (model, config) = if path.is_dir() {
        let model = path.join("diffusion_pytorch_model.safetensors");
        if !model.is_file() {
            return Err(weights_error(path, "a folder, but not a diffusers VAE folder (no diffusion_pytorch_model.safetensors)"));
        }
        (model, path.join("config.json"))
    } else {
        (path.to_path_buf(), path.with_file_name("config.json"))
    };
    let file = WeightFile::open(&model)?;
    Ok((file, config.is_file().then_some(config)))
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
        let (file, config) = open_vae(path)?;
        if wan::is_wan(&file) {
            Ok(Self::Wan(wan::WanVae::from_file(path, file)?))
        } else {
            Ok(Self::Ltx(ltx::LtxVae::from_file(path, file, config)?))
        }
    }

    /// [`load`](Self::load) on a thread of its own.
    pub async fn load_async(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        crate::blocking::on_thread("model loading", move || Self::load(path)).await
    }
}
