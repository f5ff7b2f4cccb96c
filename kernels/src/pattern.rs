//! The synthetic test video: moving colour gradients, seeded counter-based noise, and the
//! frame number drawn in the top-left corner.
//!
//! Every pixel is a pure function of (seed, absolute frame, y, x): the motion is periodic in
//! whole frames, so the phase is exact and no chunking or frame offset changes a value.

use cubecl::prelude::*;

use crate::launch::{cube_count, cube_dim, product, to_u32};
use crate::rng::{philox4x32, philox4x32_reference, seed_key, unit_f32, unit_reference};
use crate::DeviceBuffer;

/// Frames per full cycle of the red, green and blue gradients.
const PERIOD_R: u32 = 120;
const PERIOD_G: u32 = 90;
const PERIOD_B: u32 = 240;
/// Peak-to-peak amplitude of the noise.
const NOISE_AMPLITUDE: f32 = 1.0 / 32.0;
/// Digits of the frame counter.
const DIGITS: u32 = 6;
/// 3×5 glyphs of 0–9, rows top to bottom, the leftmost pixel in the highest bit
/// (repeated as literals in `glyph`).
const FONT: [u32; 10] = [
    0x7B6F, 0x2C97, 0x73E7, 0x73CF, 0x5BC9, 0x79CF, 0x79EF, 0x7292, 0x7BEF, 0x7BCF,
];

/// What a pattern frame looks like; the frame rate only labels the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatternParams {
    pub width: u32,
    pub height: u32,
    pub seed: u64,
}

impl PatternParams {
    /// Size of one frame's pixel cell of the counter.
    pub fn glyph_scale(&self) -> u32 {
        (self.height / 90).max(1)
    }
}

#[cube]
fn glyph(digit: u32) -> u32 {
    let mut bits = 0x7BCFu32;
    match digit {
        0 => bits = 0x7B6Fu32,
        1 => bits = 0x2C97u32,
        2 => bits = 0x73E7u32,
        3 => bits = 0x73CFu32,
        4 => bits = 0x5BC9u32,
        5 => bits = 0x79CFu32,
        6 => bits = 0x79EFu32,
        7 => bits = 0x7292u32,
        8 => bits = 0x7BEFu32,
        _ => {}
    }
    bits
}

/// Outside the counter's box.
const OUTSIDE: u32 = 2;

/// 1 where the counter draws a lit cell, 0 on its dark box, [`OUTSIDE`] elsewhere.
#[cube]
#[allow(clippy::manual_range_contains)] // cube functions have no `Range::contains`
fn counter_cell(x: u32, y: u32, frame: u32, scale: u32) -> u32 {
    let mut cell = 2u32; // OUTSIDE
    if x >= scale && y >= scale {
        let cx = (x - scale) / scale;
        let cy = (y - scale) / scale;
        if cx < 4 * DIGITS + 1 && cy < 7 {
            cell = 0u32;
            if cx >= 1 && cy >= 1 && cy < 6 {
                let gx = cx - 1;
                let column = gx % 4;
                if column < 3 {
                    let mut value = frame;
                    let mut skip = DIGITS - 1 - gx / 4;
                    while skip > 0 {
                        value /= 10;
                        skip -= 1;
                    }
                    let bit = 14 - ((cy - 1) * 3 + column);
                    cell = (glyph(value % 10) >> bit) & 1u32;
                }
            }
        }
    }
    cell
}

#[cube]
fn gradient(position: f32, frame: u32, period: u32) -> f32 {
    let phase = position + f32::cast_from(frame % period) / f32::cast_from(period);
    0.5f32 + 0.5f32 * f32::sin(phase * (2.0f32 * core::f32::consts::PI))
}

#[cube(launch_unchecked)]
fn pattern_kernel(
    out: &mut Array<f32>,
    width: u32,
    height: u32,
    first_frame: u32,
    pixels: usize,
    scale: u32,
    key0: u32,
    key1: u32,
) {
    let p = ABSOLUTE_POS;
    if p < pixels {
        let plane = (width * height) as usize;
        let frame = first_frame + u32::cast_from(p / plane);
        let rest = u32::cast_from(p % plane);
        let y = rest / width;
        let x = rest % width;
        let cell = counter_cell(x, y, frame, scale);
        if cell != OUTSIDE {
            let v = f32::cast_from(cell);
            out[3 * p] = v;
            out[3 * p + 1] = v;
            out[3 * p + 2] = v;
        } else {
            let u = (f32::cast_from(x) + 0.5f32) / f32::cast_from(width);
            let v = (f32::cast_from(y) + 0.5f32) / f32::cast_from(height);
            let (n0, n1, n2, _n3) = philox4x32(x, y, frame, 0u32, key0, key1);
            let r = gradient(u, frame, PERIOD_R);
            let g = gradient(v, frame, PERIOD_G);
            let b = gradient(0.5f32 * (u + v), frame, PERIOD_B);
            out[3 * p] = clamp(r + (unit_f32(n0) - 0.5f32) * NOISE_AMPLITUDE, 0.0f32, 1.0f32);
            out[3 * p + 1] = clamp(g + (unit_f32(n1) - 0.5f32) * NOISE_AMPLITUDE, 0.0f32, 1.0f32);
            out[3 * p + 2] = clamp(b + (unit_f32(n2) - 0.5f32) * NOISE_AMPLITUDE, 0.0f32, 1.0f32);
        }
    }
}

/// Renders frames `first_frame .. first_frame + frames` as `[frames, height, width, 3]` into
/// `out`, which must hold exactly that many elements.
pub fn pattern<R: Runtime>(
    client: &ComputeClient<R>,
    params: &PatternParams,
    first_frame: u32,
    frames: usize,
    out: &DeviceBuffer,
) {
    let pixels = product(&[frames, params.width as usize, params.height as usize], "pattern pixels");
    assert_eq!(out.len(), product(&[pixels, 3], "pattern output"), "pattern output size");
    assert!(
        first_frame.checked_add(to_u32(frames, "pattern frames")).is_some(),
        "pattern frame index overflows u32"
    );
    if pixels == 0 {
        return;
    }
    let [key0, key1] = seed_key(params.seed);
    // SAFETY: every index is below `pixels * 3 == out.len()`.
    unsafe {
        pattern_kernel::launch_unchecked(
            client,
            cube_count(client, pixels),
            cube_dim(),
            out.arg_of::<R, f32>(client),
            params.width,
            params.height,
            first_frame,
            pixels,
            params.glyph_scale(),
            key0,
            key1,
        );
    }
}

/// CPU reference of [`pattern`], in f64.
pub fn pattern_reference(params: &PatternParams, first_frame: u32, frames: usize) -> Vec<f64> {
    let (w, h) = (params.width, params.height);
    let scale = params.glyph_scale();
    let key = seed_key(params.seed);
    let mut out = Vec::with_capacity(frames * (w * h) as usize * 3);
    let gradient = |position: f64, frame: u32, period: u32| {
        let phase = position + f64::from(frame % period) / f64::from(period);
        0.5 + 0.5 * (phase * 2.0 * std::f64::consts::PI).sin()
    };
    for frame in first_frame..first_frame + frames as u32 {
        for y in 0..h {
            for x in 0..w {
                if let Some(lit) = counter_cell_reference(x, y, frame, scale) {
                    let v = if lit { 1.0 } else { 0.0 };
                    out.extend([v, v, v]);
                    continue;
                }
                let u = (f64::from(x) + 0.5) / f64::from(w);
                let v = (f64::from(y) + 0.5) / f64::from(h);
                let noise = philox4x32_reference([x, y, frame, 0], key)
                    .map(|n| (unit_reference(n) - 0.5) * f64::from(NOISE_AMPLITUDE));
                let base = [
                    gradient(u, frame, PERIOD_R),
                    gradient(v, frame, PERIOD_G),
                    gradient(0.5 * (u + v), frame, PERIOD_B),
                ];
                out.extend((0..3).map(|c| (base[c] + noise[c]).clamp(0.0, 1.0)));
            }
        }
    }
    out
}

fn counter_cell_reference(x: u32, y: u32, frame: u32, scale: u32) -> Option<bool> {
    let (cx, cy) = (x.checked_sub(scale)? / scale, y.checked_sub(scale)? / scale);
    if cx > 4 * DIGITS || cy >= 7 {
        return None;
    }
    if cx == 0 || cy == 0 || cy == 6 || (cx - 1) % 4 == 3 {
        return Some(false);
    }
    let digit_pos = (cx - 1) / 4;
    let digit = frame / 10u32.pow(DIGITS - 1 - digit_pos) % 10;
    let bit = 14 - ((cy - 1) * 3 + (cx - 1) % 4);
    Some((FONT[digit as usize] >> bit) & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, client, poisoned_f32, read_f32, Rng};

    #[test]
    fn matches_reference_on_random_sizes() {
        let client = client();
        let mut rng = Rng::new(1);
        for case in 0..6 {
            let params = PatternParams {
                width: rng.range(1, 97) as u32,
                height: rng.range(1, 200) as u32,
                seed: rng.next_u64(),
            };
            let first = rng.range(0, 1_000_000) as u32;
            let frames = rng.range(1, 3);
            let out = poisoned_f32(&client, frames * (params.width * params.height) as usize * 3);
            pattern(&client, &params, first, frames, &out);
            let got = read_f32(&client, out.handle().clone());
            let want = pattern_reference(&params, first, frames);
            assert_close(&got, &want, 1e-5, &format!("case {case} {params:?}"));
        }
    }

    #[test]
    fn counter_shows_the_frame_number() {
        // Frame 123456 at scale 1: the first digit "1" has its top row 010.
        let scale = 1;
        let lit = |x, y| counter_cell_reference(x, y, 123_456, scale);
        assert_eq!(lit(0, 0), None);
        assert_eq!(lit(1, 1), Some(false));
        assert_eq!(lit(2, 2), Some(false));
        assert_eq!(lit(3, 2), Some(true));
        assert_eq!(lit(4, 2), Some(false));
        // Last digit "6", bottom row 111.
        let x0 = 2 + 5 * 4;
        assert!((x0..x0 + 3).all(|x| lit(x, 6) == Some(true)));
    }

    #[test]
    fn frames_do_not_depend_on_the_launch() {
        let client = client();
        let params = PatternParams { width: 40, height: 30, seed: 9 };
        let plane = 40 * 30 * 3;
        let all = DeviceBuffer::empty_f32(&client, 5 * plane);
        pattern(&client, &params, 10, 5, &all);
        let all = read_f32(&client, all.handle().clone());
        for k in 0..5 {
            let one = DeviceBuffer::empty_f32(&client, plane);
            pattern(&client, &params, 10 + k as u32, 1, &one);
            let one = read_f32(&client, one.handle().clone());
            assert!(one == all[k * plane..(k + 1) * plane], "frame {k}");
        }
    }
}
