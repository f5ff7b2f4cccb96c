//! Normalisation over the channels of each pixel (channel-last): PixelNorm with the optional
//! adaptive scale/shift and SiLU of the LTX decoder, the RMS norm with a learned gain (and
//! SiLU) of the Wan decoder, and LayerNorm.
//!
//! A cube holds 8 pixels × 32 lanes; the lanes of a pixel stride through its channels
//! (adjacent lanes, adjacent channels) and their partial sums meet in a fixed-order tree in
//! shared memory, so results are reproducible.

use cubecl::prelude::*;
use cubecl::server::CubeCountSelection;

use crate::{DeviceBuffer, Element};
use crate::launch::product;

const LANES: u32 = 32;
const PIXELS: u32 = 8;

/// Sums `v` over the 32 lanes of this pixel's row in `scratch`, in a fixed order.
#[cube]
fn lane_sum(scratch: &mut SharedMemory<f32>, v: f32) -> f32 {
    let row = UNIT_POS_Y * LANES;
    let lane = UNIT_POS_X;
    scratch[(row + lane) as usize] = v;
    sync_cube();
    #[unroll]
    for level in 0..5u32 {
        let half = LANES >> (level + 1);
        if lane < half {
            let a = scratch[(row + lane) as usize];
            let b = scratch[(row + lane + half) as usize];
            scratch[(row + lane) as usize] = a + b;
        }
        sync_cube();
    }
    let total = scratch[row as usize];
    sync_cube();
    total
}

/// How a root-mean-square norm scales and what it applies after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct RmsConfig {
    /// Wan's `x / max(‖x‖₂, 1e−12) · √C · γ[c]`; else LTX's PixelNorm
    /// `x / √(mean x² + 1e−8)`, then `· scale[c] + shift[c]` when `ada`.
    gain: bool,
    ada: bool,
    silu: bool,
}

#[cube(launch_unchecked)]
fn rms_norm_kernel<F: Float>(
    input: &Array<F>,
    output: &mut Array<F>,
    scale: &Array<F>,
    shift: &Array<F>,
    pixels: u32,
    channels: u32,
    #[comptime] config: RmsConfig,
) {
    let mut scratch = SharedMemory::<f32>::new(comptime!((LANES * PIXELS) as usize));
    let pixel = CUBE_POS as u32 * PIXELS + UNIT_POS_Y;
    let lane = UNIT_POS_X;
    let live = pixel < pixels;
    let base = (pixel * channels) as usize;
    let mut squares = 0.0f32;
    if live {
        let mut c = lane;
        while c < channels {
            let v = f32::cast_from(input[base + c as usize]);
            squares += v * v;
            c += LANES;
        }
    }
    let total = lane_sum(&mut scratch, squares);
    if live {
        let mut inv = 1.0f32 / f32::sqrt(total / f32::cast_from(channels) + 1e-8f32);
        if comptime!(config.gain) {
            let norm = f32::sqrt(total);
            inv = f32::sqrt(f32::cast_from(channels)) / select(norm > 1e-12f32, norm, 1e-12f32);
        }
        let mut c = lane;
        while c < channels {
            let mut v = f32::cast_from(input[base + c as usize]) * inv;
            if comptime!(config.gain) {
                v *= f32::cast_from(scale[c as usize]);
            } else if comptime!(config.ada) {
                v = v * f32::cast_from(scale[c as usize]) + f32::cast_from(shift[c as usize]);
            }
            if comptime!(config.silu) {
                v = v / (1.0f32 + f32::exp(0.0f32 - v));
            }
            output[base + c as usize] = F::cast_from(v);
            c += LANES;
        }
    }
}

#[cube(launch_unchecked)]
fn layer_norm_kernel<F: Float>(
    input: &Array<F>,
    output: &mut Array<F>,
    weight: &Array<F>,
    bias: &Array<F>,
    pixels: u32,
    channels: u32,
    eps: f32,
) {
    let mut scratch = SharedMemory::<f32>::new(comptime!((LANES * PIXELS) as usize));
    let pixel = CUBE_POS as u32 * PIXELS + UNIT_POS_Y;
    let lane = UNIT_POS_X;
    let live = pixel < pixels;
    let base = (pixel * channels) as usize;
    let n = f32::cast_from(channels);
    let mut sum = 0.0f32;
    if live {
        let mut c = lane;
        while c < channels {
            sum += f32::cast_from(input[base + c as usize]);
            c += LANES;
        }
    }
    let mean = lane_sum(&mut scratch, sum) / n;
    let mut squares = 0.0f32;
    if live {
        let mut c = lane;
        while c < channels {
            let d = f32::cast_from(input[base + c as usize]) - mean;
            squares += d * d;
            c += LANES;
        }
    }
    let var = lane_sum(&mut scratch, squares) / n;
    if live {
        let inv = 1.0f32 / f32::sqrt(var + eps);
        let mut c = lane;
        while c < channels {
            let v = (f32::cast_from(input[base + c as usize]) - mean) * inv;
            let y = v * f32::cast_from(weight[c as usize]) + f32::cast_from(bias[c as usize]);
            output[base + c as usize] = F::cast_from(y);
            c += LANES;
        }
    }
}

/// Cubes of PIXELS pixels, spread over the grid's axes (one axis holds 65535 cubes on most
/// devices, 524,280 pixels); the extra cubes of the spread find no pixel.
fn grid<R: Runtime>(client: &ComputeClient<R>, pixels: usize) -> (CubeCount, CubeDim) {
    let cubes = crate::launch::to_u32(pixels.div_ceil(PIXELS as usize), "pixel norm cubes");
    (CubeCountSelection::new(client, cubes).cube_count(), CubeDim::new_2d(LANES, PIXELS))
}

/// `x / sqrt(mean_c x² + 1e-8)` per pixel, then with `ada = (1 + scale, shift)` per channel
/// `y·(1+scale) + shift`, then SiLU when asked. `input` and `out` are `[pixels, channels]`.
pub fn pixel_norm<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (pixels, channels): (usize, usize),
    ada: Option<(&DeviceBuffer, &DeviceBuffer)>,
    silu: bool,
    out: &DeviceBuffer,
) {
    let len = product(&[pixels, channels], "pixel norm");
    assert_eq!(input.len(), len, "pixel norm input size");
    assert_eq!(out.len(), len, "pixel norm output size");
    if let Some((scale, shift)) = ada {
        assert!(scale.len() == channels && shift.len() == channels, "one scale and shift per channel");
    }
    let (scale, shift) = ada.unwrap_or((input, input));
    let config = RmsConfig { gain: false, ada: ada.is_some(), silu };
    launch_rms::<R, E>(client, input, (pixels, channels), (scale, shift), config, out);
}

/// Wan's RMS norm: `x / max(‖x‖₂, 1e−12) · √C · gain[c]` per pixel (‖x‖₂ over its channels),
/// then SiLU when asked. `input` and `out` are `[pixels, channels]`.
pub fn rms_norm<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (pixels, channels): (usize, usize),
    gain: &DeviceBuffer,
    silu: bool,
    out: &DeviceBuffer,
) {
    let len = product(&[pixels, channels], "rms norm");
    assert_eq!(input.len(), len, "rms norm input size");
    assert_eq!(out.len(), len, "rms norm output size");
    assert_eq!(gain.len(), channels, "one gain per channel");
    let config = RmsConfig { gain: true, ada: false, silu };
    launch_rms::<R, E>(client, input, (pixels, channels), (gain, gain), config, out);
}

fn launch_rms<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (pixels, channels): (usize, usize),
    (scale, shift): (&DeviceBuffer, &DeviceBuffer),
    config: RmsConfig,
    out: &DeviceBuffer,
) {
    if pixels == 0 {
        return;
    }
    let (count, dim) = grid(client, pixels);
    // SAFETY: lanes read and write channels below `channels` of pixels below `pixels`; the
    // callers checked the sizes, and scale/shift hold `channels` values where they are read.
    unsafe {
        rms_norm_kernel::launch_unchecked::<E, R>(
            client,
            count,
            dim,
            input.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            scale.arg_of::<R, E>(client),
            shift.arg_of::<R, E>(client),
            pixels as u32,
            channels as u32,
            config,
        );
    }
}

/// LayerNorm over the channels of each pixel (biased variance), with affine `weight`, `bias`.
pub fn layer_norm<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (pixels, channels): (usize, usize),
    (weight, bias): (&DeviceBuffer, &DeviceBuffer),
    eps: f32,
    out: &DeviceBuffer,
) {
    let len = product(&[pixels, channels], "layer norm");
    assert_eq!(input.len(), len, "layer norm input size");
    assert_eq!(out.len(), len, "layer norm output size");
    assert!(weight.len() == channels && bias.len() == channels, "one weight and bias per channel");
    if pixels == 0 {
        return;
    }
    let (count, dim) = grid(client, pixels);
    // SAFETY: as for `pixel_norm`.
    unsafe {
        layer_norm_kernel::launch_unchecked::<E, R>(
            client,
            count,
            dim,
            input.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            weight.arg_of::<R, E>(client),
            bias.arg_of::<R, E>(client),
            pixels as u32,
            channels as u32,
            eps,
        );
    }
}

/// CPU reference of [`pixel_norm`].
pub fn pixel_norm_reference(
    input: &[f32],
    channels: usize,
    ada: Option<(&[f32], &[f32])>,
    silu: bool,
) -> Vec<f64> {
    input
        .chunks(channels)
        .flat_map(|px| {
            let ms = px.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / channels as f64;
            let inv = 1.0 / (ms + 1e-8).sqrt();
            px.iter().enumerate().map(move |(c, &v)| {
                let mut y = f64::from(v) * inv;
                if let Some((scale, shift)) = ada {
                    y = y * f64::from(scale[c]) + f64::from(shift[c]);
                }
                if silu {
                    y /= 1.0 + (-y).exp();
                }
                y
            })
        })
        .collect()
}

/// CPU reference of [`rms_norm`].
pub fn rms_norm_reference(input: &[f32], channels: usize, gain: &[f32], silu: bool) -> Vec<f64> {
    input
        .chunks(channels)
        .flat_map(|px| {
            let norm = px.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            let inv = (channels as f64).sqrt() / norm.max(1e-12);
            px.iter().zip(gain).map(move |(&v, &g)| {
                let y = f64::from(v) * inv * f64::from(g);
                if silu { y / (1.0 + (-y).exp()) } else { y }
            })
        })
        .collect()
}

/// CPU reference of [`layer_norm`].
pub fn layer_norm_reference(input: &[f32], channels: usize, weight: &[f32], bias: &[f32], eps: f64) -> Vec<f64> {
    input
        .chunks(channels)
        .flat_map(|px| {
            let n = channels as f64;
            let mean = px.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = px.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            px.iter()
                .enumerate()
                .map(move |(c, &v)| (f64::from(v) - mean) * inv * f64::from(weight[c]) + f64::from(bias[c]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, has_f16, poisoned, read_as_f32, rounded};

    #[test]
    fn pixel_norm_matches_reference() {
        pixel_norm_check::<f32>(1e-5);
        if has_f16() {
            pixel_norm_check::<half::f16>(1e-2);
        }
    }

    #[test]
    fn rms_norm_matches_reference() {
        rms_norm_check::<f32>(1e-5);
        if has_f16() {
            rms_norm_check::<half::f16>(1e-2);
        }
    }

    fn rms_norm_check<E: Element>(tolerance: f64) {
        let client = client();
        let mut rng = Rng::new(54);
        for case in 0..8 {
            let (pixels, channels) = (rng.range(1, 50), [1, 7, 32, 33, 96, 384][case % 6]);
            let mut data = rounded::<E>(rng.vec_f32(pixels * channels, -3.0, 3.0));
            if case == 3 {
                // An all-zero pixel: the norm's floor keeps it finite (zero).
                data[..channels].fill(0.0);
            }
            let gain = rounded::<E>(rng.vec_f32(channels, 0.5, 1.5));
            let silu = case % 2 == 0;
            let input = DeviceBuffer::from_f32_as::<_, E>(&client, &data);
            let g = DeviceBuffer::from_f32_as::<_, E>(&client, &gain);
            let out = poisoned::<E>(&client, data.len());
            rms_norm::<_, E>(&client, &input, (pixels, channels), &g, silu, &out);
            let want = rms_norm_reference(&data, channels, &gain, silu);
            assert_close(&read_as_f32::<E>(&client, out.handle().clone()), &want, tolerance, &format!("case {case}"));
        }
    }

    #[test]
    fn layer_norm_matches_reference() {
        layer_norm_check::<f32>(1e-5);
        if has_f16() {
            layer_norm_check::<half::f16>(1e-2);
        }
    }

    #[test]
    fn more_pixels_than_one_grid_axis_holds() {
        // 600,000 pixels are 75,000 cubes, over the 65,535 one axis holds on most devices.
        let client = client();
        let mut rng = Rng::new(53);
        let (pixels, channels) = (600_000, 4);
        let data = rng.vec_f32(pixels * channels, -3.0, 3.0);
        let input = DeviceBuffer::from_f32(&client, &data);
        let out = poisoned::<f32>(&client, data.len());
        pixel_norm::<_, f32>(&client, &input, (pixels, channels), None, false, &out);
        let want = pixel_norm_reference(&data, channels, None, false);
        assert_close(&read_as_f32::<f32>(&client, out.handle().clone()), &want, 1e-5, "pixel norm");
        let (weight, bias) = ([1.0; 4], [0.0; 4]);
        let (w, b) = (DeviceBuffer::from_f32(&client, &weight), DeviceBuffer::from_f32(&client, &bias));
        let out = poisoned::<f32>(&client, data.len());
        layer_norm::<_, f32>(&client, &input, (pixels, channels), (&w, &b), 1e-6, &out);
        let want = layer_norm_reference(&data, channels, &weight, &bias, 1e-6);
        assert_close(&read_as_f32::<f32>(&client, out.handle().clone()), &want, 1e-5, "layer norm");
    }

    fn pixel_norm_check<E: Element>(tolerance: f64) {
        let client = client();
        let mut rng = Rng::new(51);
        for case in 0..8 {
            let (pixels, channels) = (rng.range(1, 50), [1, 7, 32, 33, 128, 300][case % 6]);
            let data = rounded::<E>(rng.vec_f32(pixels * channels, -3.0, 3.0));
            let scale = rounded::<E>(rng.vec_f32(channels, 0.5, 1.5));
            let shift = rounded::<E>(rng.vec_f32(channels, -0.5, 0.5));
            let (ada, silu) = (case % 2 == 1, case % 4 >= 2);
            let input = DeviceBuffer::from_f32_as::<_, E>(&client, &data);
            let s = DeviceBuffer::from_f32_as::<_, E>(&client, &scale);
            let t = DeviceBuffer::from_f32_as::<_, E>(&client, &shift);
            let out = poisoned::<E>(&client, data.len());
            pixel_norm::<_, E>(&client, &input, (pixels, channels), ada.then_some((&s, &t)), silu, &out);
            let want = pixel_norm_reference(&data, channels, ada.then_some((&scale[..], &shift[..])), silu);
            assert_close(&read_as_f32::<E>(&client, out.handle().clone()), &want, tolerance, &format!("case {case}"));
        }
    }

    fn layer_norm_check<E: Element>(tolerance: f64) {
        let client = client();
        let mut rng = Rng::new(52);
        for case in 0..6 {
            let (pixels, channels) = (rng.range(1, 40), [2, 31, 64, 257][case % 4]);
            let data = rounded::<E>(rng.vec_f32(pixels * channels, -2.0, 4.0));
            let weight = rounded::<E>(rng.vec_f32(channels, 0.5, 1.5));
            let bias = rounded::<E>(rng.vec_f32(channels, -0.5, 0.5));
            let input = DeviceBuffer::from_f32_as::<_, E>(&client, &data);
            let w = DeviceBuffer::from_f32_as::<_, E>(&client, &weight);
            let b = DeviceBuffer::from_f32_as::<_, E>(&client, &bias);
            let out = poisoned::<E>(&client, data.len());
            layer_norm::<_, E>(&client, &input, (pixels, channels), (&w, &b), 1e-6, &out);
            let want = layer_norm_reference(&data, channels, &weight, &bias, 1e-6);
            assert_close(&read_as_f32::<E>(&client, out.handle().clone()), &want, tolerance, &format!("case {case}"));
        }
    }
}
