//! Counter-based Gaussian noise: the value at (seed, frame, channel, y, x) is fixed, whatever
//! the chunking, the launch or the device.
//!
//! Philox-4x32-10 with key = seed and counter = (x, y, channel, frame); Box–Muller on the top
//! 24 bits of words 0 and 1: `u1 = (w0»8 + 1)/2²⁴ ∈ (0, 1]`, `u2 = (w1»8)/2²⁴`,
//! `ε = √(−2 ln u1) · cos(2π u2)`. Frames are channel-last `[frame, y, x, channel]`.
//! Also here: the LTX decoder's two uses of it, the latent's input mix and injected planes.

use cubecl::prelude::*;

use crate::{DeviceBuffer, Element};
use crate::launch::{cube_count, cube_dim, product};
use crate::rng::{philox4x32, philox4x32_reference, seed_key};

/// The counter frame word of noise planes, above any frame index.
pub const PLANE_FRAME: u32 = u32::MAX;

/// The standard normal value at counter `(x, y, c, frame)` under key `(key0, key1)`.
#[cube]
fn standard_normal(x: u32, y: u32, c: u32, frame: u32, key0: u32, key1: u32) -> f32 {
    let (w0, w1, _w2, _w3) = philox4x32(x, y, c, frame, key0, key1);
    let u1 = (f32::cast_from(w0 >> 8u32) + 1.0f32) * (1.0f32 / 16_777_216.0f32);
    let u2 = f32::cast_from(w1 >> 8u32) * (1.0f32 / 16_777_216.0f32);
    f32::sqrt(-2.0f32 * f32::ln(u1)) * f32::cos(2.0f32 * core::f32::consts::PI * u2)
}

/// Host reference of [`standard_normal`].
fn standard_normal_reference(counter: [u32; 4], seed: u64) -> f64 {
    let [w0, w1, ..] = philox4x32_reference(counter, seed_key(seed));
    let u1 = (f64::from(w0 >> 8) + 1.0) / 16_777_216.0;
    let u2 = f64::from(w1 >> 8) / 16_777_216.0;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cube(launch_unchecked)]
fn gaussian_kernel<F: Float>(
    output: &mut Array<F>,
    height: u32,
    width: u32,
    channels: u32,
    first_channel: u32,
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
        output[o] = F::cast_from(standard_normal(x, y, first_channel + c, frame, key0, key1));
    }
}

#[allow(clippy::too_many_arguments)]
fn launch_gaussian<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    seed: u64,
    (first_frame, first_channel): (u32, u32),
    (frames, height, width, channels): (usize, usize, usize, usize),
    out: &DeviceBuffer,
) {
    assert_eq!(out.len(), frames * height * width * channels, "noise output size");
    if out.is_empty() {
        return;
    }
    let [key0, key1] = seed_key(seed);
    // SAFETY: one write per output index below `out.len()`.
    unsafe {
        gaussian_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            out.arg_of::<R, E>(client),
            height as u32,
            width as u32,
            channels as u32,
            first_channel,
            first_frame,
            key0,
            key1,
        );
    }
}

/// Fills `out` (`[frames, height, width, channels]`) with the standard normal values of
/// frames `first_frame ..`.
pub fn gaussian<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    seed: u64,
    first_frame: u32,
    dims: (usize, usize, usize, usize),
    out: &DeviceBuffer,
) {
    launch_gaussian::<R, E>(client, seed, (first_frame, 0), dims, out);
}

/// One `height × width` plane of standard normal values with counter `(x, y, id,
/// PLANE_FRAME)`: noise that is fixed per (seed, id) and shared by every frame.
pub fn gaussian_plane<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    seed: u64,
    id: u32,
    (height, width): (usize, usize),
    out: &DeviceBuffer,
) {
    launch_gaussian::<R, E>(client, seed, (PLANE_FRAME, id), (1, height, width, 1), out);
}

/// CPU reference of [`gaussian`].
pub fn gaussian_reference(
    seed: u64,
    first_frame: u32,
    (frames, height, width, channels): (usize, usize, usize, usize),
) -> Vec<f64> {
    let mut out = Vec::with_capacity(frames * height * width * channels);
    for f in 0..frames as u32 {
        for y in 0..height as u32 {
            for x in 0..width as u32 {
                for c in 0..channels as u32 {
                    out.push(standard_normal_reference([x, y, c, first_frame + f], seed));
                }
            }
        }
    }
    out
}

/// CPU reference of [`gaussian_plane`].
pub fn gaussian_plane_reference(seed: u64, id: u32, (height, width): (usize, usize)) -> Vec<f64> {
    let mut out = Vec::with_capacity(height * width);
    for y in 0..height as u32 {
        for x in 0..width as u32 {
            out.push(standard_normal_reference([x, y, id, PLANE_FRAME], seed));
        }
    }
    out
}

#[cube(launch_unchecked)]
fn latent_input_kernel<F: Float>(
    input: &Array<F>,
    output: &mut Array<F>,
    mean: &Array<F>,
    std: &Array<F>,
    height: u32,
    width: u32,
    channels: u32,
    first_frame: u32,
    key0: u32,
    key1: u32,
    noise_scale: f32,
    #[comptime] noise: bool,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let c = (o % channels as usize) as u32;
        let mut v = f32::cast_from(input[o]);
        if comptime!(noise) {
            let pixel = o / channels as usize;
            let x = (pixel % width as usize) as u32;
            let rest = pixel / width as usize;
            let y = (rest % height as usize) as u32;
            let frame = first_frame + (rest / height as usize) as u32;
            let eps = standard_normal(x, y, c, frame, key0, key1);
            v = (1.0f32 - noise_scale) * v + noise_scale * eps;
        }
        output[o] = F::cast_from(v * f32::cast_from(std[c as usize]) + f32::cast_from(mean[c as usize]));
    }
}

/// The LTX decoder's input: `((1 − s)·z + s·ε)·std[c] + mean[c]` over latent frames
/// `first_frame ..` (`[frames, h, w, c]`), with ε the [`gaussian`] noise of `seed` at those
/// absolute frames; no noise term when `noise_scale` is 0.
#[allow(clippy::too_many_arguments)]
pub fn latent_input<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, height, width, channels): (usize, usize, usize, usize),
    (mean, std): (&DeviceBuffer, &DeviceBuffer),
    (seed, first_frame, noise_scale): (u64, u32, f32),
    out: &DeviceBuffer,
) {
    assert_eq!(input.len(), product(&[frames, height, width, channels], "latent input"), "latent input size");
    assert_eq!(out.len(), input.len(), "latent output size");
    assert!(mean.len() == channels && std.len() == channels, "one mean and std per channel");
    if out.is_empty() {
        return;
    }
    let [key0, key1] = seed_key(seed);
    // SAFETY: one read and one write per index below `out.len()`; channels below `channels`.
    unsafe {
        latent_input_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            input.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            mean.arg_of::<R, E>(client),
            std.arg_of::<R, E>(client),
            height as u32,
            width as u32,
            channels as u32,
            first_frame,
            key0,
            key1,
            noise_scale,
            noise_scale != 0.0,
        );
    }
}

/// CPU reference of [`latent_input`].
pub fn latent_input_reference(
    input: &[f32],
    (height, width, channels): (usize, usize, usize),
    (mean, std): (&[f32], &[f32]),
    (seed, first_frame, noise_scale): (u64, u32, f32),
) -> Vec<f64> {
    let frames = input.len() / (height * width * channels);
    let eps = gaussian_reference(seed, first_frame, (frames, height, width, channels));
    let s = f64::from(noise_scale);
    input
        .iter()
        .zip(eps)
        .enumerate()
        .map(|(i, (&z, e))| {
            let c = i % channels;
            let v = if s == 0.0 { f64::from(z) } else { (1.0 - s) * f64::from(z) + s * e };
            v * f64::from(std[c]) + f64::from(mean[c])
        })
        .collect()
}

#[cube(launch_unchecked)]
fn add_plane_kernel<F: Float>(data: &mut Array<F>, plane: &Array<F>, scale: &Array<F>, channels: u32, pixels: u32) {
    let o = ABSOLUTE_POS;
    if o < data.len() {
        let c = o % channels as usize;
        let p = (o / channels as usize) % pixels as usize;
        let v = f32::cast_from(data[o]) + f32::cast_from(scale[c]) * f32::cast_from(plane[p]);
        data[o] = F::cast_from(v);
    }
}

/// `data[f, y, x, c] += scale[c] · plane[y, x]` in place, over every frame of `data`
/// (`[frames, h, w, channels]` with `plane` `[h, w]`): noise injected per channel.
pub fn add_plane<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    data: &DeviceBuffer,
    plane: &DeviceBuffer,
    scale: &DeviceBuffer,
) {
    let channels = scale.len();
    assert!(channels > 0 && !plane.is_empty(), "a plane and a scale per channel");
    assert_eq!(data.len() % product(&[plane.len(), channels], "noise frame"), 0, "data holds whole frames of the plane's size");
    if data.is_empty() {
        return;
    }
    // SAFETY: in-place update of each index below `data.len()`; reads inside plane and scale.
    unsafe {
        add_plane_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, data.len()),
            cube_dim(),
            data.arg_of::<R, E>(client),
            plane.arg_of::<R, E>(client),
            scale.arg_of::<R, E>(client),
            channels as u32,
            plane.len() as u32,
        );
    }
}

/// CPU reference of [`add_plane`].
pub fn add_plane_reference(data: &[f32], plane: &[f32], scale: &[f32]) -> Vec<f64> {
    let channels = scale.len();
    data.iter()
        .enumerate()
        .map(|(i, &v)| {
            let (c, p) = (i % channels, (i / channels) % plane.len());
            f64::from(v) + f64::from(scale[c]) * f64::from(plane[p])
        })
        .collect()
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
        let whole = read_f32(&client, whole.handle().clone());
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
                got.extend(read_f32(&client, out.handle().clone()));
                first += n;
            }
            assert!(got == whole, "chunks of {chunk} change the noise");
        }
        // Statistics of a larger draw, and another seed differs.
        let big = poisoned_f32(&client, 64 * 64 * 16);
        gaussian::<_, f32>(&client, 5, 0, (1, 64, 64, 16), &big);
        let v = read_f32(&client, big.handle().clone());
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, variance {var}");
        if has_f16() {
            let half = poisoned::<half::f16>(&client, frames * frame_len);
            gaussian::<_, half::f16>(&client, 99, 3, (frames, h, w, c), &half);
            assert_close(&read_as_f32::<half::f16>(&client, half.handle().clone()), &want, 1e-2, "f16 noise");
        }
        let other = poisoned_f32(&client, frames * frame_len);
        gaussian::<_, f32>(&client, 100, 3, (frames, h, w, c), &other);
        assert!(read_f32(&client, other.handle().clone()) != whole);
    }

    #[test]
    fn planes_depend_on_seed_and_id_only() {
        let client = client();
        let (h, w) = (5, 7);
        let plane = |seed, id| {
            let out = poisoned_f32(&client, h * w);
            gaussian_plane::<_, f32>(&client, seed, id, (h, w), &out);
            read_f32(&client, out.handle().clone())
        };
        let a = plane(3, 0x8001_0002);
        assert_close(&a, &gaussian_plane_reference(3, 0x8001_0002, (h, w)), 1e-3, "plane");
        assert!(a == plane(3, 0x8001_0002));
        assert!(a != plane(3, 0x8001_0003) && a != plane(4, 0x8001_0002));
    }

    #[test]
    fn latent_input_matches_reference() {
        let client = client();
        let mut rng = crate::test_util::Rng::new(17);
        let (frames, h, w, c) = (3, 2, 3, 5);
        let z = rng.vec_f32(frames * h * w * c, -2.0, 2.0);
        let mean = rng.vec_f32(c, -0.5, 0.5);
        let std = rng.vec_f32(c, 0.5, 1.5);
        let upload = |v: &[f32]| DeviceBuffer::from_f32(&client, v);
        let (zb, mb, sb) = (upload(&z), upload(&mean), upload(&std));
        for (seed, first, s) in [(0, 0, 0.0f32), (9, 4, 0.025), (9, 5, 1.0)] {
            let out = poisoned_f32(&client, z.len());
            latent_input::<_, f32>(&client, &zb, (frames, h, w, c), (&mb, &sb), (seed, first, s), &out);
            let want = latent_input_reference(&z, (h, w, c), (&mean, &std), (seed, first, s));
            assert_close(&read_f32(&client, out.handle().clone()), &want, 1e-4, &format!("seed {seed} s {s}"));
        }
        // Frame by frame equals all at once (the noise follows absolute frames).
        let whole = poisoned_f32(&client, z.len());
        latent_input::<_, f32>(&client, &zb, (frames, h, w, c), (&mb, &sb), (9, 4, 0.025), &whole);
        let whole = read_f32(&client, whole.handle().clone());
        let frame_len = h * w * c;
        for f in 0..frames {
            let one = upload(&z[f * frame_len..(f + 1) * frame_len]);
            let out = poisoned_f32(&client, frame_len);
            latent_input::<_, f32>(&client, &one, (1, h, w, c), (&mb, &sb), (9, 4 + f as u32, 0.025), &out);
            assert!(read_f32(&client, out.handle().clone()) == whole[f * frame_len..(f + 1) * frame_len]);
        }
    }

    #[test]
    fn add_plane_matches_reference() {
        let client = client();
        let mut rng = crate::test_util::Rng::new(23);
        let (frames, h, w, c) = (3, 4, 5, 6);
        let data = rng.vec_f32(frames * h * w * c, -1.0, 1.0);
        let plane = rng.vec_f32(h * w, -2.0, 2.0);
        let scale = rng.vec_f32(c, -0.5, 0.5);
        let buffer = DeviceBuffer::from_f32(&client, &data);
        add_plane::<_, f32>(&client, &buffer, &DeviceBuffer::from_f32(&client, &plane), &DeviceBuffer::from_f32(&client, &scale));
        let want = add_plane_reference(&data, &plane, &scale);
        assert_close(&read_f32(&client, buffer.handle().clone()), &want, 1e-6, "add plane");
    }
}
