//! Model weights and the networks built from them.

pub mod esrgan;
mod pickle;
pub mod weights;

pub use weights::{Tensor, WeightFile};
