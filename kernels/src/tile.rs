//! Tiled execution on channel-last frames `[n, y, x, channel]`: cut a tile out of each frame,
//! add a model's tile output into an accumulator with separable weights, then normalise by
//! the summed weights and clamp.
//!
//! Tiles are blended one launch after another in a fixed order, so the sums are reproducible.

use cubecl::prelude::*;

use crate::launch::{cube_count, cube_dim, product};
use crate::{DeviceBuffer, Element};

#[cube(launch_unchecked)]
fn crop_kernel<F: Float, G: Float>(
    input: &Array<F>,
    output: &mut Array<G>,
    in_h: u32,
    in_w: u32,
    channels: u32,
    y0: u32,
    x0: u32,
    tile_h: u32,
    tile_w: u32,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let c = (o % channels as usize) as u32;
        let px = o / channels as usize;
        let x = (px % tile_w as usize) as u32;
        let rest = px / tile_w as usize;
        let y = (rest % tile_h as usize) as u32;
        let n = (rest / tile_h as usize) as u32;
        let at = ((n * in_h + y0 + y) * in_w + x0 + x) as usize * channels as usize + c as usize;
        output[o] = G::cast_from(input[at]);
    }
}

/// Copies the `tile_h × tile_w` region at (`y0`, `x0`) of each of `n` frames
/// `[n, in_h, in_w, c]` (elements `A`) into `out` (`[n, tile_h, tile_w, c]`, elements `B`).
#[allow(clippy::too_many_arguments)]
pub fn crop<R: Runtime, A: Element, B: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (n, in_h, in_w, c): (usize, usize, usize, usize),
    (y0, x0): (usize, usize),
    (tile_h, tile_w): (usize, usize),
    out: &DeviceBuffer,
) {
    let inside = |at: usize, len: usize, side: usize| at.checked_add(len).is_some_and(|end| end <= side);
    assert!(inside(y0, tile_h, in_h) && inside(x0, tile_w, in_w), "tile outside the frame");
    assert_eq!(input.len(), product(&[n, in_h, in_w, c], "crop input"), "crop input size");
    assert_eq!(out.len(), product(&[n, tile_h, tile_w, c], "crop output"), "crop output size");
    if out.is_empty() {
        return;
    }
    // SAFETY: reads stay inside each frame's region, one write per output.
    unsafe {
        crop_kernel::launch_unchecked::<A, B, R>(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            input.arg_of::<R, A>(client),
            out.arg_of::<R, B>(client),
            in_h as u32,
            in_w as u32,
            c as u32,
            y0 as u32,
            x0 as u32,
            tile_h as u32,
            tile_w as u32,
        );
    }
}

#[cube(launch_unchecked)]
fn blend_kernel<F: Float>(
    tile: &Array<F>,
    acc: &mut Array<f32>,
    weight_y: &Array<f32>,
    weight_x: &Array<f32>,
    out_h: u32,
    out_w: u32,
    channels: u32,
    y0: u32,
    x0: u32,
    tile_h: u32,
    tile_w: u32,
    #[comptime] clamp_tile: bool,
) {
    let o = ABSOLUTE_POS;
    if o < tile.len() {
        let c = (o % channels as usize) as u32;
        let px = o / channels as usize;
        let x = (px % tile_w as usize) as u32;
        let rest = px / tile_w as usize;
        let y = (rest % tile_h as usize) as u32;
        let n = (rest / tile_h as usize) as u32;
        let w = weight_y[y as usize] * weight_x[x as usize];
        if w != 0.0f32 {
            let mut v = f32::cast_from(tile[o]);
            if comptime!(clamp_tile) {
                v = clamp(v, 0.0f32, 1.0f32);
            }
            let at = ((n * out_h + y0 + y) * out_w + x0 + x) as usize * channels as usize + c as usize;
            acc[at] += w * v;
        }
    }
}

/// Adds `weight_y[y] · weight_x[x] · tile[n, y, x, c]` (the tile clamped to [0, 1] first
/// when asked) into the f32 accumulator `acc` (`[n, out_h, out_w, c]`) at (`y0`, `x0`).
#[allow(clippy::too_many_arguments)]
pub fn blend<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    tile: &DeviceBuffer,
    (n, tile_h, tile_w, c): (usize, usize, usize, usize),
    (weight_y, weight_x): (&DeviceBuffer, &DeviceBuffer),
    acc: &DeviceBuffer,
    (out_h, out_w): (usize, usize),
    (y0, x0): (usize, usize),
    clamp_tile: bool,
) {
    let inside = |at: usize, len: usize, side: usize| at.checked_add(len).is_some_and(|end| end <= side);
    assert!(inside(y0, tile_h, out_h) && inside(x0, tile_w, out_w), "tile outside the output");
    assert_eq!(tile.len(), product(&[n, tile_h, tile_w, c], "blend tile"), "blend tile size");
    assert_eq!(acc.len(), product(&[n, out_h, out_w, c], "blend accumulator"), "blend accumulator size");
    assert!(weight_y.len() == tile_h && weight_x.len() == tile_w, "one weight per tile row and column");
    if tile.is_empty() {
        return;
    }
    // SAFETY: every write lands inside the tile's rectangle of `acc`.
    unsafe {
        blend_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, tile.len()),
            cube_dim(),
            tile.arg_of::<R, E>(client),
            acc.arg_of::<R, f32>(client),
            weight_y.arg_of::<R, f32>(client),
            weight_x.arg_of::<R, f32>(client),
            out_h as u32,
            out_w as u32,
            c as u32,
            y0 as u32,
            x0 as u32,
            tile_h as u32,
            tile_w as u32,
            clamp_tile,
        );
    }
}

#[cube(launch_unchecked)]
fn normalize_kernel(acc: &Array<f32>, inverse: &Array<f32>, out: &mut Array<f32>, plane: u32, channels: u32) {
    let o = ABSOLUTE_POS;
    if o < out.len() {
        let pixel = (o / channels as usize) % plane as usize;
        out[o] = clamp(acc[o] * inverse[pixel], 0.0f32, 1.0f32);
    }
}

/// `out = clamp(acc · inverse[y, x], 0, 1)` with `inverse` the reciprocal summed weight of
/// each output pixel (`[out_h, out_w]`).
pub fn normalize<R: Runtime>(
    client: &ComputeClient<R>,
    acc: &DeviceBuffer,
    inverse: &DeviceBuffer,
    (n, out_h, out_w, c): (usize, usize, usize, usize),
    out: &DeviceBuffer,
) {
    assert_eq!(acc.len(), product(&[n, out_h, out_w, c], "normalize input"), "normalize input size");
    assert_eq!(out.len(), acc.len(), "normalize output size");
    assert_eq!(inverse.len(), product(&[out_h, out_w], "normalize weights"), "one weight per output pixel");
    if out.is_empty() {
        return;
    }
    // SAFETY: one read and one write per index below `out.len()`.
    unsafe {
        normalize_kernel::launch_unchecked(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            acc.arg_of::<R, f32>(client),
            inverse.arg_of::<R, f32>(client),
            out.arg_of::<R, f32>(client),
            (out_h * out_w) as u32,
            c as u32,
        );
    }
}

/// CPU references.
pub mod reference {
    pub fn crop(
        input: &[f32],
        (n, h, w, c): (usize, usize, usize, usize),
        (y0, x0): (usize, usize),
        (th, tw): (usize, usize),
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * th * tw * c);
        for f in 0..n {
            for y in y0..y0 + th {
                out.extend_from_slice(&input[((f * h + y) * w + x0) * c..((f * h + y) * w + x0 + tw) * c]);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    pub fn blend(
        tile: &[f32],
        (n, th, tw, c): (usize, usize, usize, usize),
        (wy, wx): (&[f32], &[f32]),
        acc: &mut [f64],
        (oh, ow): (usize, usize),
        (y0, x0): (usize, usize),
        clamp_tile: bool,
    ) {
        for f in 0..n {
            for y in 0..th {
                for x in 0..tw {
                    let w = f64::from(wy[y]) * f64::from(wx[x]);
                    for ch in 0..c {
                        let mut v = f64::from(tile[((f * th + y) * tw + x) * c + ch]);
                        if clamp_tile {
                            v = v.clamp(0.0, 1.0);
                        }
                        acc[((f * oh + y0 + y) * ow + x0 + x) * c + ch] += w * v;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, poisoned_f32, read_f32};

    #[test]
    fn crop_blend_normalize_match_references() {
        let client = client();
        let mut rng = Rng::new(91);
        let (n, h, w, c) = (2, 9, 11, 3);
        let frames = rng.vec_f32(n * h * w * c, -0.2, 1.2);
        let input = DeviceBuffer::from_f32(&client, &frames);
        let mut acc_want = vec![0.0f64; frames.len()];
        let acc = DeviceBuffer::from_f32(&client, &vec![0.0; frames.len()]);
        // Overlapping tiles covering the frame, blended in order.
        for (y0, x0, th, tw) in [(0, 0, 6, 7), (3, 0, 6, 7), (0, 4, 6, 7), (3, 4, 6, 7)] {
            let tile = poisoned_f32(&client, n * th * tw * c);
            crop::<_, f32, f32>(&client, &input, (n, h, w, c), (y0, x0), (th, tw), &tile);
            let want = reference::crop(&frames, (n, h, w, c), (y0, x0), (th, tw));
            let got = read_f32(&client, tile.handle().clone());
            assert_eq!(got, want, "crop at {y0},{x0}");
            let wy = rng.vec_f32(th, 0.0, 1.0);
            let wx = rng.vec_f32(tw, 0.0, 1.0);
            let (wyb, wxb) = (DeviceBuffer::from_f32(&client, &wy), DeviceBuffer::from_f32(&client, &wx));
            blend::<_, f32>(&client, &tile, (n, th, tw, c), (&wyb, &wxb), &acc, (h, w), (y0, x0), true);
            reference::blend(&got, (n, th, tw, c), (&wy, &wx), &mut acc_want, (h, w), (y0, x0), true);
        }
        assert_close(&read_f32(&client, acc.handle().clone()), &acc_want, 1e-5, "blend");
        let inverse: Vec<f32> = (0..h * w).map(|_| rng.uniform(0.5, 2.0) as f32).collect();
        let inv = DeviceBuffer::from_f32(&client, &inverse);
        let out = poisoned_f32(&client, frames.len());
        normalize(&client, &acc, &inv, (n, h, w, c), &out);
        let want: Vec<f64> = acc_want
            .iter()
            .enumerate()
            .map(|(i, &v)| (v * f64::from(inverse[(i / c) % (h * w)])).clamp(0.0, 1.0))
            .collect();
        assert_close(&read_f32(&client, out.handle().clone()), &want, 1e-5, "normalize");
    }
}
