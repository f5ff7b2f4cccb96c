//! Shared launch plumbing: cube counts for element-wise kernels and typed buffers.

use cubecl::prelude::*;
use cubecl::server::{CubeCountSelection, Handle};

/// Threads per cube of the element-wise kernels.
pub(crate) const CUBE_DIM: u32 = 256;

/// A cube count covering `units` threads of `CUBE_DIM`, spread over the axes the device
/// allows; kernels guard with `ABSOLUTE_POS < units`.
pub(crate) fn cube_count<R: Runtime>(client: &ComputeClient<R>, units: usize) -> CubeCount {
    let cubes = units.div_ceil(CUBE_DIM as usize).max(1);
    let cubes = u32::try_from(cubes).expect("kernel launch larger than 2^32 cubes");
    CubeCountSelection::new(client, cubes).cube_count()
}

pub(crate) fn cube_dim() -> CubeDim {
    CubeDim::new_1d(CUBE_DIM)
}

/// The launch grid of an element-wise kernel over `units` threads: cubes of 256 threads,
/// spread over the axes the device allows. The kernel guards with `ABSOLUTE_POS < units`.
pub fn elementwise_grid<R: Runtime>(client: &ComputeClient<R>, units: usize) -> (CubeCount, CubeDim) {
    (cube_count(client, units), cube_dim())
}

/// The element types of model activations and weights: f32 everywhere, f16 and bf16 where
/// the device supports them. Kernels load and store `E` and compute in f32.
pub trait Element: Float + CubeElement + Copy + Send + Sync + 'static {
    /// The nearest value of this type.
    fn round_from(v: f32) -> Self;
    fn widen(self) -> f32;
}

impl Element for f32 {
    fn round_from(v: f32) -> Self {
        v
    }
    fn widen(self) -> f32 {
        self
    }
}

impl Element for half::f16 {
    fn round_from(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn widen(self) -> f32 {
        half::f16::to_f32(self)
    }
}

impl Element for half::bf16 {
    fn round_from(v: f32) -> Self {
        half::bf16::from_f32(v)
    }
    fn widen(self) -> f32 {
        half::bf16::to_f32(self)
    }
}

/// Whether the device computes with `E`.
pub fn supports<R: Runtime, E: Element>(client: &ComputeClient<R>) -> bool {
    client.properties().supports_type(E::as_type_native_unchecked())
}

/// A contiguous device buffer of `len` elements of `elem_bytes` bytes. Its fields are private
/// so a buffer cannot claim more elements than its allocation holds.
#[derive(Clone, Debug)]
pub struct DeviceBuffer {
    handle: Handle,
    len: usize,
    elem_bytes: usize,
}

impl DeviceBuffer {
    /// Wraps a handle.
    ///
    /// # Safety
    /// `handle` must hold at least `len` elements of `elem_bytes` bytes.
    pub unsafe fn from_raw_parts(handle: Handle, len: usize, elem_bytes: usize) -> Self {
        Self { handle, len, elem_bytes }
    }

    /// Allocates `len` elements of `E` in a buffer with room for `room`, so buffers of one
    /// role keep one size and the allocator reuses their slots (uninitialised).
    pub fn empty_with_room<R: Runtime, E: CubeElement>(client: &ComputeClient<R>, len: usize, room: usize) -> Self {
        let bytes = len.max(room).max(1).checked_mul(size_of::<E>()).expect("a buffer larger than memory");
        Self { handle: client.empty(bytes), len, elem_bytes: size_of::<E>() }
    }

    /// Allocates `len` f32 elements (uninitialised).
    pub fn empty_f32<R: Runtime>(client: &ComputeClient<R>, len: usize) -> Self {
        Self::empty_with_room::<R, f32>(client, len, len)
    }

    /// Allocates `len` f32 elements in a buffer with room for `room` (≥ `len`).
    pub fn empty_f32_with_room<R: Runtime>(client: &ComputeClient<R>, len: usize, room: usize) -> Self {
        Self::empty_with_room::<R, f32>(client, len, room)
    }

    /// Allocates `len` elements of `E` (uninitialised).
    pub fn empty<R: Runtime, E: CubeElement>(client: &ComputeClient<R>, len: usize) -> Self {
        Self::empty_with_room::<R, E>(client, len, len)
    }

    /// Allocates `len` u32 elements (uninitialised).
    pub fn empty_u32<R: Runtime>(client: &ComputeClient<R>, len: usize) -> Self {
        Self::empty_with_room::<R, u32>(client, len, len)
    }

    /// Uploads values of `E`.
    fn from_slice<R: Runtime, E: CubeElement>(client: &ComputeClient<R>, data: &[E]) -> Self {
        if data.is_empty() {
            return Self::empty::<R, E>(client, 0);
        }
        Self { handle: client.create_from_slice(E::as_bytes(data)), len: data.len(), elem_bytes: size_of::<E>() }
    }

    /// Uploads f32 values converted to `E`.
    pub fn from_f32_as<R: Runtime, E: Element>(client: &ComputeClient<R>, data: &[f32]) -> Self {
        let converted: Vec<E> = data.iter().map(|&v| E::round_from(v)).collect();
        Self::from_slice(client, &converted)
    }

    pub fn from_f32<R: Runtime>(client: &ComputeClient<R>, data: &[f32]) -> Self {
        Self::from_slice(client, data)
    }

    pub fn from_u32<R: Runtime>(client: &ComputeClient<R>, data: &[u32]) -> Self {
        Self::from_slice(client, data)
    }

    /// Uploads bytes as little-endian u32 words, the last one zero-padded.
    pub fn from_bytes_as_words<R: Runtime>(client: &ComputeClient<R>, bytes: &[u8]) -> Self {
        let words = bytes.len().div_ceil(4);
        if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
            return Self { handle: client.create_from_slice(bytes), len: words, elem_bytes: 4 };
        }
        let mut padded = bytes.to_vec();
        padded.resize(words.max(1) * 4, 0);
        Self { handle: client.create_from_slice(&padded), len: words, elem_bytes: 4 }
    }

    /// Elements in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes an element.
    pub fn elem_bytes(&self) -> usize {
        self.elem_bytes
    }

    /// The CubeCL handle (to read the buffer back).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The buffer as a kernel argument.
    ///
    /// # Safety
    /// The buffer must hold at least `len` elements of the kernel's element type.
    pub unsafe fn arg<R: Runtime>(&self) -> ArrayArg<R> {
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.len) }
    }

    /// The buffer as a kernel argument of vectors of `width` elements (the last partial
    /// vector, if any, left out).
    ///
    /// # Safety
    /// As [`arg`](Self::arg); the buffer must start aligned to a vector (device allocations do).
    pub(crate) unsafe fn vector_arg<R: Runtime>(&self, width: usize) -> ArrayArg<R> {
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.len / width) }
    }
}
