//! f32 frames → packed 8-bit RGB, so that only bytes cross back to the host.
//!
//! Greyscale inputs are replicated into the three channels, a fourth (alpha) channel is
//! dropped, values are clamped to [0, 1] and rounded half up, NaN becomes 0. Storage has no
//! byte type on every backend, so four consecutive bytes are packed little-endian in a `u32`.

use cubecl::prelude::*;

use crate::launch::{cube_count, cube_dim, product};
use crate::DeviceBuffer;

#[cube]
fn to_u8(v: f32) -> u32 {
    let mut byte = 0u32;
    if !f32::is_nan(v) {
        byte = u32::cast_from(f32::floor(clamp(v, 0.0f32, 1.0f32) * 255.0f32 + 0.5f32));
    }
    byte
}

#[cube(launch_unchecked)]
fn rgb8_kernel(input: &Array<f32>, output: &mut Array<u32>, channels: u32, pixels: usize) {
    let word = ABSOLUTE_POS;
    if word < output.len() {
        let channels = channels as usize;
        let bytes = pixels * 3;
        let mut packed = 0u32;
        #[unroll]
        for j in 0..4u32 {
            let byte = word * 4 + j as usize;
            if byte < bytes {
                let p = byte / 3;
                let mut src = p;
                if channels != 1 {
                    src = p * channels + byte % 3;
                }
                packed |= to_u8(input[src]) << (8 * j);
            }
        }
        output[word] = packed;
    }
}

/// Number of `u32` words holding the RGB bytes of `pixels` pixels.
pub fn rgb8_words(pixels: usize) -> usize {
    (pixels * 3).div_ceil(4)
}

/// Converts `pixels` pixels of `channels` (1, 3 or 4) f32 values into packed RGB bytes in
/// `out`, which holds [`rgb8_words`]`(pixels)` words.
pub fn rgb8<R: Runtime>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    pixels: usize,
    channels: usize,
    out: &DeviceBuffer,
) {
    assert!(matches!(channels, 1 | 3 | 4), "rgb8 takes 1, 3 or 4 channels");
    assert_eq!(input.len(), product(&[pixels, channels], "rgb8 input"), "rgb8 input size");
    assert_eq!(out.len(), rgb8_words(pixels), "rgb8 output size");
    if pixels == 0 {
        return;
    }
    // SAFETY: reads stay below `pixels * channels`, writes below `out.len()`.
    unsafe {
        rgb8_kernel::launch_unchecked(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            input.arg_of::<R, f32>(client),
            out.arg_of::<R, u32>(client),
            channels as u32,
            pixels,
        );
    }
}

/// Unpacks the words written by [`rgb8`] into `pixels * 3` bytes.
pub fn unpack_rgb8(words: &[u8], pixels: usize) -> Vec<u8> {
    let mut bytes = words.to_vec();
    bytes.truncate(pixels * 3);
    bytes
}

/// CPU reference of [`rgb8`] (already unpacked).
pub fn rgb8_reference(input: &[f32], channels: usize) -> Vec<u8> {
    input
        .chunks_exact(channels)
        .flat_map(|px| {
            let pick = |c: usize| if channels == 1 { px[0] } else { px[c] };
            [0, 1, 2].map(|c| {
                let v = f64::from(pick(c));
                if v.is_nan() {
                    0
                } else {
                    (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor() as u8
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{client, Rng};

    #[test]
    fn matches_reference() {
        let client = client();
        let mut rng = Rng::new(3);
        for case in 0..12 {
            let channels = [1, 3, 4][case % 3];
            let pixels = rng.range(1, 5000);
            let mut data = rng.vec_f32(pixels * channels, -0.2, 1.2);
            // Special values where the reference is exact.
            data[0] = f32::NAN;
            if data.len() > 3 {
                data[1] = f32::INFINITY;
                data[2] = f32::NEG_INFINITY;
                data[3] = 0.5 / 255.0 * 3.0;
            }
            let input = DeviceBuffer::from_f32(&client, &data);
            let out = DeviceBuffer::from_u32(&client, &vec![0xA5A5_A5A5; rgb8_words(pixels)]);
            rgb8(&client, &input, pixels, channels, &out);
            let got = unpack_rgb8(&client.read_one_unchecked(out.handle().clone()), pixels);
            let want = rgb8_reference(&data, channels);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let src = f64::from(data[if channels == 1 { i / 3 } else { i / 3 * channels + i % 3 }]);
                // f32 and f64 may round differently within a hair of a half step.
                let near_half = ((src * 255.0).fract() - 0.5).abs() < 1e-4;
                assert!(
                    g == w || (near_half && g.abs_diff(w) == 1),
                    "case {case} byte {i}: got {g}, want {w} (input {src})"
                );
            }
            assert_eq!(got.len(), want.len());
        }
    }
}
