//! Shared launch plumbing: cube counts for element-wise kernels and typed buffers.

use cubecl::prelude::*;
use cubecl::server::{CubeCountSelection, Handle};

/// Threads per cube of the element-wise kernels.
pub(crate) const CUBE_DIM: u32 = 256;

/// A cube count covering `units` threads of `CUBE_DIM`, spread over the axes the device
/// allows; kernels guard with `ABSOLUTE_POS < units`.
pub(crate) fn cube_count<R: Runtime>(client: &ComputeClient<R>, units: usize) -> CubeCount {
    let cubes = units.div_ceil(CUBE_DIM as usize).max(1);
    let cubes = to_u32(cubes, "a launch's cubes");
    CubeCountSelection::new(client, cubes).cube_count()
}

/// The product of launch sizes, checked: a launcher's bounds checks must not wrap.
///
/// # Panics
/// When the product overflows `usize` (`what` names it).
pub(crate) fn product(dims: &[usize], what: &str) -> usize {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or_else(|| panic!("{what}: {dims:?} overflows"))
}

/// `n` as a kernel's u32 scalar.
///
/// # Panics
/// When `n` does not fit (`what` names it).
pub(crate) fn to_u32(n: usize, what: &str) -> u32 {
    u32::try_from(n).unwrap_or_else(|_| panic!("{what}: {n} is over 2^32"))
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

/// Identifies the device (the CubeCL server) a client submits to, whichever stream it uses.
pub fn device_id<R: Runtime>(client: &ComputeClient<R>) -> usize {
    // A server's info lives in one allocation for the server's lifetime, shared by all its
    // clients and streams: its address names the server.
    std::ptr::from_ref(client.info()).cast::<()>() as usize
}

/// A contiguous device buffer of `len` elements of `elem_bytes` bytes. Its fields are private
/// so a buffer cannot claim more elements than its allocation holds, nor be bound on another
/// device than the one holding it.
#[derive(Clone, Debug)]
pub struct DeviceBuffer {
    handle: Handle,
    len: usize,
    elem_bytes: usize,
    device: usize,
}

impl DeviceBuffer {
    /// Allocates `len` elements of `E` in a buffer with room for `room`, so buffers of one
    /// role keep one size and the allocator reuses their slots (uninitialised).
    ///
    /// # Panics
    /// When the byte count overflows.
    pub fn empty_with_room<R: Runtime, E: CubeElement>(client: &ComputeClient<R>, len: usize, room: usize) -> Self {
        let bytes = product(&[len.max(room).max(1), size_of::<E>()], "a buffer");
        Self::wrap(client, client.empty(bytes), len, size_of::<E>())
    }

    fn wrap<R: Runtime>(client: &ComputeClient<R>, handle: Handle, len: usize, elem_bytes: usize) -> Self {
        Self { handle, len, elem_bytes, device: device_id(client) }
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
        Self::wrap(client, client.create_from_slice(E::as_bytes(data)), data.len(), size_of::<E>())
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
            return Self::wrap(client, client.create_from_slice(bytes), words, 4);
        }
        let mut padded = bytes.to_vec();
        padded.resize(words.max(1) * 4, 0);
        Self::wrap(client, client.create_from_slice(&padded), words, 4)
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

    /// The device holding the buffer (see [`device_id`]).
    pub fn device_id(&self) -> usize {
        self.device
    }

    /// The CubeCL handle (to read the buffer back).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The buffer as a kernel argument, unchecked.
    ///
    /// # Safety
    /// The buffer must hold at least `len` elements of the kernel's element type, on the
    /// launching client's device.
    pub(crate) unsafe fn arg<R: Runtime>(&self) -> ArrayArg<R> {
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.len) }
    }

    /// The buffer as a kernel argument of `E` elements on `client`, checked: it lives on
    /// the client's device, holds `E`-sized elements and no more than the kernels' 32-bit
    /// indices reach (its length cannot exceed its allocation, as the fields are private).
    ///
    /// # Panics
    /// When a check fails.
    pub fn arg_of<R: Runtime, E: CubeElement>(&self, client: &ComputeClient<R>) -> ArrayArg<R> {
        self.check::<E, R>(client);
        // SAFETY: the allocation holds `len` elements of `E`, checked above.
        unsafe { self.arg() }
    }

    /// The buffer as a kernel argument of vectors of `width` elements of `E` (the last partial
    /// vector, if any, left out), checked as [`arg_of`](Self::arg_of). Device allocations
    /// start aligned to any vector.
    pub(crate) fn vector_arg_of<R: Runtime, E: CubeElement>(&self, client: &ComputeClient<R>, width: usize) -> ArrayArg<R> {
        self.check::<E, R>(client);
        // SAFETY: as in `arg_of`; `len / width` vectors lie inside the allocation.
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.len / width.max(1)) }
    }

    fn check<E: CubeElement, R: Runtime>(&self, client: &ComputeClient<R>) {
        assert_eq!(self.device, device_id(client), "a buffer of another device");
        assert_eq!(self.elem_bytes, size_of::<E>(), "a buffer of {}-byte elements bound as {}", self.elem_bytes, std::any::type_name::<E>());
        assert!(self.len <= u32::MAX as usize, "a buffer of {} elements, over the kernels' 2^32", self.len);
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;
    use crate::layout::{nearest, pixel_shuffle};
    use crate::test_util::client;

    /// The panic message of `f`, which must panic.
    fn refusal(f: impl FnOnce()) -> String {
        let panic = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a refusal");
        panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
    }

    #[test]
    fn launchers_refuse_sizes_that_overflow_or_do_not_match() {
        let client = client();
        let x = DeviceBuffer::from_f32(&client, &[0.0; 16]);
        let out = DeviceBuffer::empty_f32(&client, 64);
        // Products that wrap would otherwise pass the size checks.
        let huge = usize::MAX / 2 + 1;
        assert!(refusal(|| pixel_shuffle::<_, f32>(&client, &x, (huge, 2, 2, 4), 2, &out)).contains("overflows"));
        assert!(refusal(|| nearest::<_, f32>(&client, &x, (1, 2, 2, 4), huge, &out)).contains("overflows"));
        assert!(refusal(|| nearest::<_, f32>(&client, &x, (1, 2, 2, 4), 3, &out)).contains("output size"));
        // A buffer of another element size is not bound.
        let halves = DeviceBuffer::from_f32_as::<_, half::f16>(&client, &[0.0; 16]);
        assert!(refusal(|| nearest::<_, f32>(&client, &halves, (1, 2, 2, 4), 2, &out)).contains("2-byte"));
        assert!(refusal(|| {
            let _ = product(&[huge, 2], "a size");
        }).contains("a size"));
    }
}
