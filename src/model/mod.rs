//! Model weights and the networks built from them.

pub mod esrgan;
pub mod ltx;
pub mod tiling;
mod pickle;
pub mod weights;

pub use weights::{Tensor, WeightFile, save_safetensors};
