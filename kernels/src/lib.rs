//! The CubeCL kernels of framestream.
//!
//! Every kernel has one launcher (generic over the CubeCL runtime) and one CPU reference
//! computed in f64, which the tests compare it with. Tensors are contiguous row-major f32
//! buffers; frames are laid out `[frames, height, width, channels]`.

pub mod conv;
pub mod copy;
pub mod layout;
pub mod linear;
pub mod noise;
pub mod norm;
pub mod pattern;
pub mod planes;
pub mod resize;
pub mod rgb8;
pub mod rng;
pub mod temporal;
pub mod unpack;

mod launch;

pub use launch::DeviceBuffer;

#[cfg(test)]
mod test_util;
