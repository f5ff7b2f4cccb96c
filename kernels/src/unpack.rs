//! Decoded 8- or 16-bit packed RGB(A) → f32 frames in [0, 1], rotated by quarter turns.
//!
//! The decoder thread hands over interleaved samples (`rgb24`, `rgba`, `rgb48le`, `rgba64le`)
//! packed little-endian into `u32` words; the rotation is the one a file's display matrix asks
//! for, clockwise.

use cubecl::prelude::*;

use crate::DeviceBuffer;
use crate::launch::{cube_count, cube_dim, product};

/// The layout of the packed input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedFormat {
    /// 3 (RGB) or 4 (RGBA).
    pub channels: u32,
    /// 1 (8-bit) or 2 (16-bit little-endian).
    pub bytes_per_sample: u32,
    /// Clockwise quarter turns: 0, 1, 2 or 3.
    pub quarter_turns: u32,
}

impl PackedFormat {
    /// (width, height) of the output frames for `width × height` input frames.
    pub fn output_size(&self, width: usize, height: usize) -> (usize, usize) {
        if self.quarter_turns % 2 == 1 { (height, width) } else { (width, height) }
    }

    pub fn bytes_per_frame(&self, width: usize, height: usize) -> usize {
        width * height * (self.channels * self.bytes_per_sample) as usize
    }
}

/// Source pixel (y, x) of output pixel (y, x) for `turns` clockwise quarter turns of a
/// `width × height` source.
#[cube]
fn source_pixel(y: u32, x: u32, width: u32, height: u32, #[comptime] turns: u32) -> (u32, u32) {
    let mut sy = y;
    let mut sx = x;
    if comptime!(turns == 1) {
        sy = height - 1 - x;
        sx = y;
    } else if comptime!(turns == 2) {
        sy = height - 1 - y;
        sx = width - 1 - x;
    } else if comptime!(turns == 3) {
        sy = x;
        sx = width - 1 - y;
    }
    (sy, sx)
}

#[cube(launch_unchecked)]
fn unpack_kernel(
    input: &Array<u32>,
    output: &mut Array<f32>,
    width: u32,
    height: u32,
    #[comptime] format: PackedFormat,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let c = comptime!(format.channels) as usize;
        let turns = comptime!(format.quarter_turns);
        let mut out_w = width;
        if comptime!(turns % 2 == 1) {
            out_w = height;
        }
        let ch = o % c;
        let pixel = o / c;
        let plane = (width * height) as usize;
        let frame = pixel / plane;
        let at = (pixel % plane) as u32;
        let (sy, sx) = source_pixel(at / out_w, at % out_w, width, height, turns);
        let sample = (frame * plane + (sy * width + sx) as usize) * c + ch;
        if comptime!(format.bytes_per_sample == 1) {
            let word = input[sample / 4];
            let v = (word >> (8 * (sample % 4) as u32)) & 0xFFu32;
            output[o] = f32::cast_from(v) / 255.0f32;
        } else {
            let word = input[sample / 2];
            let v = (word >> (16 * (sample % 2) as u32)) & 0xFFFFu32;
            output[o] = f32::cast_from(v) / 65535.0f32;
        }
    }
}

/// Unpacks `frames` frames of `width × height` packed samples into `out`
/// (`[frames, out_h, out_w, channels]`, see [`PackedFormat::output_size`]).
pub fn unpack<R: Runtime>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, height, width): (usize, usize, usize),
    format: PackedFormat,
    out: &DeviceBuffer,
) {
    assert!(matches!(format.channels, 3 | 4) && matches!(format.bytes_per_sample, 1 | 2));
    assert!(format.quarter_turns < 4);
    let sample_bytes = (format.channels * format.bytes_per_sample) as usize;
    let bytes = product(&[frames, width, height, sample_bytes], "unpack input");
    assert_eq!(input.len(), bytes.div_ceil(4), "unpack input size");
    assert_eq!(out.len(), product(&[frames, width, height, format.channels as usize], "unpack output"), "unpack output size");
    if frames == 0 {
        return;
    }
    // SAFETY: every read is a sample of a frame below `frames`, every write below `out.len()`.
    unsafe {
        unpack_kernel::launch_unchecked(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            input.arg_of::<R, u32>(client),
            out.arg_of::<R, f32>(client),
            width as u32,
            height as u32,
            format,
        );
    }
}

/// Packs bytes into words for [`unpack`] (the last word zero-padded).
pub fn pack_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

/// CPU reference of [`unpack`].
pub fn unpack_reference(
    bytes: &[u8],
    (frames, height, width): (usize, usize, usize),
    format: PackedFormat,
) -> Vec<f64> {
    let c = format.channels as usize;
    let bps = format.bytes_per_sample as usize;
    let (out_w, out_h) = format.output_size(width, height);
    let mut out = Vec::with_capacity(frames * width * height * c);
    for f in 0..frames {
        for y in 0..out_h {
            for x in 0..out_w {
                let (sy, sx) = match format.quarter_turns {
                    0 => (y, x),
                    1 => (height - 1 - x, y),
                    2 => (height - 1 - y, width - 1 - x),
                    _ => (x, width - 1 - y),
                };
                for ch in 0..c {
                    let at = (((f * height + sy) * width + sx) * c + ch) * bps;
                    out.push(if bps == 1 {
                        f64::from(bytes[at]) / 255.0
                    } else {
                        f64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]])) / 65535.0
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, poisoned_f32, read_f32};

    #[test]
    fn matches_reference() {
        let client = client();
        let mut rng = Rng::new(8);
        for case in 0..16 {
            let format = PackedFormat {
                channels: [3, 4][case % 2],
                bytes_per_sample: [1, 2][case / 2 % 2],
                quarter_turns: (case / 4) as u32,
            };
            let (frames, height, width) = (rng.range(1, 3), rng.range(1, 17), rng.range(1, 17));
            let bytes: Vec<u8> = (0..frames * format.bytes_per_frame(width, height))
                .map(|_| rng.next_u64() as u8)
                .collect();
            let input = DeviceBuffer::from_u32(&client, &pack_words(&bytes));
            let out = poisoned_f32(&client, frames * width * height * format.channels as usize);
            unpack(&client, &input, (frames, height, width), format, &out);
            let got = read_f32(&client, out.handle().clone());
            let want = unpack_reference(&bytes, (frames, height, width), format);
            assert_close(&got, &want, 1e-6, &format!("case {case}: {format:?} {width}x{height}"));
        }
    }

    #[test]
    fn a_quarter_turn_moves_the_bottom_left_corner_to_the_top_left() {
        // 2 × 3 source (width 3), one channel distinct per pixel.
        let format = PackedFormat { channels: 3, bytes_per_sample: 1, quarter_turns: 1 };
        let bytes: Vec<u8> = (0..6u8).flat_map(|p| [p, 0, 0]).collect();
        let out = unpack_reference(&bytes, (1, 2, 3), format);
        let reds: Vec<u8> = out.chunks(3).map(|p| (p[0] * 255.0).round() as u8).collect();
        // Source rows: [0 1 2] / [3 4 5]; clockwise: [3 0] / [4 1] / [5 2].
        assert_eq!(reds, [3, 0, 4, 1, 5, 2]);
    }
}
