//! Counter-based Gaussian noise: the value at (seed, frame, channel, y, x) is fixed, whatever
//! the chunking, the launch or the device.
//!
//! Philox-4x32-10 with key = seed and counter = (x, y, channel, frame); Box–Muller on the top
//! 24 bits of words 0 and 1: `u1 = (w0»8 + 1)/2²⁴ ∈ (0, 1]`, `u2 = (w1»8)/2²⁴`,
//! `ε = √(−2 ln u1) · cos(2π u2)`. Frames are channel-last `[frame, y, x, channel]`.

use cubecl::prelude::*;

use crate::{DeviceBuffer, Element};
use crate::launch::{cube_count, cube_dim};
use crate::rng::{philox4x32, philox4x32_reference, seed_key};

#[cube(launch_unchecked)]
fn gaussian_kernel<F: Float>(
    output: &mut Array<F>,
    height: u32,
    width: u32,
    channels: u32,
    first_frame: u32,
    key0: u32,
    key1: u32,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let c = (o % channels as usize) as u32;
        let pixel = o / channels as usize;
        let x = (pixel % width as usize) as u32;
        let rest = pixel / width as usize;
        let y = (rest % height as usize) as u32;
        let frame = first_frame + (rest / height as usize) as u32;
        let (w0, w1, _w2, _w3) = philox4x32(x, y, c, frame, key0, key1);
        let u1 = (f32::cast_from(w0 >> 8u32) + 1.0f32) * (1.0f32 / 16_777_216.0f32);
        let u2 = f32::cast_from(w1 >> 8u32) * (1.0f32 / 16_777_216.0f32);
        let v = f32::sqrt(-2.0f32 * f32::ln(u1)) * f32::cos(2.0f32 * core::f32::consts::PI * u2);
        output[o] = F::cast_from(v);
    }
}

/// Fills `out` (`[frames, height, width, channels]`) with the standard normal values of
/// frames `first_frame ..`.
pub fn gaussian<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    seed: u64,
    first_frame: u32,
    (frames, height, width, channels): (usize, usize, usize, usize),
    out: &DeviceBuffer,
) {
    assert_eq!(out.len, frames * height * width * channels, "noise output size");
    if out.len == 0 {
        return;
    }
    let [key0, key1] = seed_key(seed);
    // SAFETY: one write per output index below `out.len`.
    unsafe {
        gaussian_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, out.len),
            cube_dim(),
            out.arg(),
            height as u32,
            width as u32,
            channels as u32,
            first_frame,
            key0,
            key1,
        );
    }
}

/// CPU reference of [`gaussian`].
pub fn gaussian_reference(
    seed: u64,
    first_frame: u32,
    (frames, height, width, channels): (usize, usize, usize, usize),
) -> Vec<f64> {
    let key = seed_key(seed);
    let mut out = Vec::with_capacity(frames * height * width * channels);
    for f in 0..frames as u32 {
        for y in 0..height as u32 {
            for x in 0..width as u32 {
                for c in 0..channels as u32 {
                    let [w0, w1, ..] = philox4x32_reference([x, y, c, first_frame + f], key);
                    let u1 = (f64::from(w0 >> 8) + 1.0) / 16_777_216.0;
                    let u2 = f64::from(w1 >> 8) / 16_777_216.0;
                    out.push((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, client, has_f16, poisoned, poisoned_f32, read_as_f32, read_f32};

    #[test]
    fn matches_reference_and_any_chunking() {
        let client = client();
        let (frames, h, w, c) = (7, 5, 6, 4);
        let frame_len = h * w * c;
        let whole = poisoned_f32(&client, frames * frame_len);
        gaussian::<_, f32>(&client, 99, 3, (frames, h, w, c), &whole);
        let whole = read_f32(&client, whole.handle);
        let want = gaussian_reference(99, 3, (frames, h, w, c));
        for (i, (&g, &w)) in whole.iter().zip(&want).enumerate() {
            // ln and cos of f32: absolute error bound (|ε| < 5.8).
            assert!(g.is_finite() && (f64::from(g) - w).abs() < 2e-4, "value {i}: {g} vs {w}");
        }
        for chunk in [1, 2, 3] {
            let mut got = Vec::new();
            let mut first = 0;
            while first < frames {
                let n = chunk.min(frames - first);
                let out = poisoned_f32(&client, n * frame_len);
                gaussian::<_, f32>(&client, 99, 3 + first as u32, (n, h, w, c), &out);
                got.extend(read_f32(&client, out.handle));
                first += n;
            }
            assert!(got == whole, "chunks of {chunk} change the noise");
        }
        // Statistics of a larger draw, and another seed differs.
        let big = poisoned_f32(&client, 64 * 64 * 16);
        gaussian::<_, f32>(&client, 5, 0, (1, 64, 64, 16), &big);
        let v = read_f32(&client, big.handle);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, variance {var}");
        if has_f16() {
            let half = poisoned::<half::f16>(&client, frames * frame_len);
            gaussian::<_, half::f16>(&client, 99, 3, (frames, h, w, c), &half);
            assert_close(&read_as_f32::<half::f16>(&client, half.handle), &want, 1e-2, "f16 noise");
        }
        let other = poisoned_f32(&client, frames * frame_len);
        gaussian::<_, f32>(&client, 100, 3, (frames, h, w, c), &other);
        assert!(read_f32(&client, other.handle) != whole);
    }
}
