//! Helpers shared by the kernel tests.

use cubecl::prelude::*;
use cubecl::server::Handle;

/// The runtime every kernel test runs on: wgpu (lavapipe without a GPU), or CUDA device 0 with
/// the `cuda-tests` feature (where a GPU is lent: see `tools/gpu_bench.sh kernels`).
#[cfg(not(feature = "cuda-tests"))]
pub type TestRuntime = cubecl::wgpu::WgpuRuntime;
#[cfg(feature = "cuda-tests")]
pub type TestRuntime = cubecl::cuda::CudaRuntime;

pub fn client() -> ComputeClient<TestRuntime> {
    TestRuntime::client(&Default::default())
}

/// A small deterministic generator for test data (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn vec_f32(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi) as f32).collect()
    }
}

pub fn read_f32(client: &ComputeClient<TestRuntime>, handle: Handle) -> Vec<f32> {
    f32::from_bytes(&client.read_one_unchecked(handle)).to_vec()
}

/// Fills a fresh buffer of `len` f32 with NaN so unwritten outputs are caught.
pub fn poisoned_f32(client: &ComputeClient<TestRuntime>, len: usize) -> crate::DeviceBuffer {
    crate::DeviceBuffer::from_f32(client, &vec![f32::NAN; len])
}

/// Asserts `got` equals the f64 reference within a relative tolerance; NaN never passes.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(g);
        let tol = rel * w.abs().max(1.0);
        assert!(
            g.is_finite() && (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (tolerance {tol})"
        );
    }
}

/// Reads `E` values back as f32.
pub fn read_as_f32<E: crate::Element>(client: &ComputeClient<TestRuntime>, handle: Handle) -> Vec<f32> {
    E::from_bytes(&client.read_one_unchecked(handle)).iter().map(|v| v.widen()).collect()
}

/// Rounds to `E` and back, so a reference sees the inputs a kernel sees.
pub fn rounded<E: crate::Element>(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| E::round_from(x).widen()).collect()
}

/// A fresh buffer of `len` NaN in `E`, so unwritten outputs are caught.
pub fn poisoned<E: crate::Element>(client: &ComputeClient<TestRuntime>, len: usize) -> crate::DeviceBuffer {
    crate::DeviceBuffer::from_f32_as::<_, E>(client, &vec![f32::NAN; len])
}

/// Whether the test device computes with f16.
pub fn has_f16() -> bool {
    crate::supports::<TestRuntime, half::f16>(&client())
}
