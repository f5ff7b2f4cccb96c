//! Model weights and the networks built from them.

pub mod esrgan;
pub mod ltx;
pub mod tiling;
mod pickle;
mod precision;
pub mod weights;

pub use precision::Precision;
pub use weights::{Tensor, WeightFile, save_safetensors};
