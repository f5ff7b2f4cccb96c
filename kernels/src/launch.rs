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

/// A contiguous device buffer of `len` elements.
#[derive(Clone, Debug)]
pub struct DeviceBuffer {
    pub handle: Handle,
    pub len: usize,
}

impl DeviceBuffer {
    pub fn new(handle: Handle, len: usize) -> Self {
        Self { handle, len }
    }

    /// Allocates `len` f32 elements (uninitialised).
    pub fn empty_f32<R: Runtime>(client: &ComputeClient<R>, len: usize) -> Self {
        Self::new(client.empty(len.max(1) * size_of::<f32>()), len)
    }

    /// Allocates `len` f32 elements in a buffer with room for `room` (≥ `len`), so buffers of
    /// one role keep one size and the allocator reuses their slots.
    pub fn empty_f32_with_room<R: Runtime>(client: &ComputeClient<R>, len: usize, room: usize) -> Self {
        Self::new(client.empty(len.max(room).max(1) * size_of::<f32>()), len)
    }

    /// Allocates `len` u32 elements (uninitialised).
    pub fn empty_u32<R: Runtime>(client: &ComputeClient<R>, len: usize) -> Self {
        Self::new(client.empty(len.max(1) * size_of::<u32>()), len)
    }

    pub fn from_f32<R: Runtime>(client: &ComputeClient<R>, data: &[f32]) -> Self {
        if data.is_empty() {
            return Self::empty_f32(client, 0);
        }
        Self::new(client.create_from_slice(f32::as_bytes(data)), data.len())
    }

    pub fn from_u32<R: Runtime>(client: &ComputeClient<R>, data: &[u32]) -> Self {
        if data.is_empty() {
            return Self::new(client.empty(size_of::<u32>()), 0);
        }
        Self::new(client.create_from_slice(u32::as_bytes(data)), data.len())
    }

    /// The buffer as a kernel argument.
    ///
    /// # Safety
    /// The buffer must hold at least `len` elements of the kernel's element type.
    pub(crate) unsafe fn arg<R: Runtime>(&self) -> ArrayArg<R> {
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.len) }
    }
}
