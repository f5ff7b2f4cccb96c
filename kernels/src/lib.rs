//! The CubeCL kernels of framestream.
//!
//! Every kernel has one launcher (generic over the CubeCL runtime) and one CPU reference
//! computed in f64, which the tests compare it with. Tensors are contiguous row-major buffers;
//! frames are laid out `[frames, height, width, channels]`. Video I/O kernels work on f32;
//! model kernels are generic over the [`Element`] type (f32, f16, bf16) and compute in f32.
//!
//! Launchers check their preconditions before they launch — buffer sizes computed with
//! checked arithmetic, every buffer bound through [`DeviceBuffer::arg_of`] (right device,
//! element size, 32-bit indexable) — and panic when one fails: a failed check is a bug in
//! the caller, and nothing has been launched. Callers validate user input first and turn
//! it into errors.

pub mod attention;
pub mod conv;
pub mod copy;
pub mod elementwise;
pub mod flow;
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
pub mod tile;
pub mod unpack;

mod launch;

pub use launch::{DeviceBuffer, Element, device_id, elementwise_grid, supports};

#[cfg(test)]
mod test_util;
