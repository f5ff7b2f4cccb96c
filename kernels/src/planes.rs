//! f32 RGB frames → the planar 8- or 10-bit samples an encoder takes, on the device.
//!
//! Y'CbCr uses BT.709 in limited range (Y' 16–235, C 16–240 at 8 bits, ×4 at 10 bits);
//! subsampled chroma is the mean of its block of pixels. Planar RGB (`gbrp`) is full range in
//! FFmpeg's plane order G, B, R; packed `bgr0` (what FFV1 takes for 8-bit RGB) is one plane of
//! B, G, R, 0 bytes. Greyscale is replicated, alpha dropped, values clamped, NaN
//! read as 0. Samples are packed little-endian into `u32` words (4 bytes or 2 `u16` a word),
//! frame after frame, each frame plane after plane, so only the samples are read back.

use cubecl::prelude::*;

use crate::DeviceBuffer;
use crate::launch::{cube_count, cube_dim};

const KR: f32 = 0.2126;
const KB: f32 = 0.0722;
const KG: f32 = 1.0 - KR - KB;

/// Which samples, how subsampled, how deep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlaneFormat {
    /// RGB instead of Y'CbCr.
    pub rgb: bool,
    /// One plane of packed B, G, R, 0 (8-bit RGB only).
    pub packed: bool,
    /// log2 of the horizontal chroma subsampling (0 or 1).
    pub chroma_shift_x: u32,
    /// log2 of the vertical chroma subsampling (0 or 1).
    pub chroma_shift_y: u32,
    /// 8 or 10.
    pub bits: u32,
}

impl PlaneFormat {
    pub const YUV420P: Self = Self::yuv(1, 1, 8);
    pub const YUV422P: Self = Self::yuv(1, 0, 8);
    pub const YUV444P: Self = Self::yuv(0, 0, 8);
    pub const YUV420P10: Self = Self::yuv(1, 1, 10);
    pub const YUV422P10: Self = Self::yuv(1, 0, 10);
    pub const YUV444P10: Self = Self::yuv(0, 0, 10);
    pub const GBRP: Self = Self::rgb(false, 8);
    pub const GBRP10: Self = Self::rgb(false, 10);
    pub const BGR0: Self = Self::rgb(true, 8);

    const fn yuv(chroma_shift_x: u32, chroma_shift_y: u32, bits: u32) -> Self {
        Self { rgb: false, packed: false, chroma_shift_x, chroma_shift_y, bits }
    }

    const fn rgb(packed: bool, bits: u32) -> Self {
        Self { rgb: true, packed, chroma_shift_x: 0, chroma_shift_y: 0, bits }
    }

    pub fn bytes_per_sample(&self) -> usize {
        if self.bits > 8 { 2 } else { 1 }
    }

    /// (samples per row, rows) of each plane (unused planes are empty).
    pub fn plane_sizes(&self, width: usize, height: usize) -> [(usize, usize); 3] {
        if self.packed {
            return [(4 * width, height), (0, 0), (0, 0)];
        }
        let chroma = (width >> self.chroma_shift_x, height >> self.chroma_shift_y);
        [(width, height), chroma, chroma]
    }

    /// Why a frame size cannot be stored, if it cannot (odd sides with subsampled chroma).
    pub fn check_size(&self, width: usize, height: usize) -> Result<(), String> {
        let odd_w = self.chroma_shift_x > 0 && width % 2 == 1;
        let odd_h = self.chroma_shift_y > 0 && height % 2 == 1;
        if odd_w || odd_h {
            return Err(format!(
                "{width}x{height} has an odd {} where chroma is subsampled",
                if odd_w { "width" } else { "height" }
            ));
        }
        Ok(())
    }

    pub fn samples_per_frame(&self, width: usize, height: usize) -> usize {
        self.plane_sizes(width, height).iter().map(|(w, h)| w * h).sum()
    }

    pub fn bytes_per_frame(&self, width: usize, height: usize) -> usize {
        self.samples_per_frame(width, height) * self.bytes_per_sample()
    }

    /// `u32` words holding `frames` frames.
    pub fn words(&self, frames: usize, width: usize, height: usize) -> usize {
        (frames * self.bytes_per_frame(width, height)).div_ceil(4)
    }
}

/// Channel `ch` (0 R, 1 G, 2 B) of pixel `pixel`, clamped to [0, 1], NaN as 0.
#[cube]
fn channel(input: &Array<f32>, pixel: usize, channels: usize, ch: usize) -> f32 {
    let mut at = pixel;
    if channels != 1 {
        at = pixel * channels + ch;
    }
    let v = input[at];
    let mut out = 0.0f32;
    if !f32::is_nan(v) {
        out = clamp(v, 0.0f32, 1.0f32);
    }
    out
}

#[cube]
fn quantize(v: f32) -> u32 {
    u32::cast_from(f32::floor(v + 0.5f32))
}

/// Sample `index` of a frame (all planes in a row) whose first pixel is `frame_pixel`.
#[cube]
#[allow(unused_assignments)]
fn sample(
    input: &Array<f32>,
    frame_pixel: usize,
    index: u32,
    width: u32,
    height: u32,
    channels: usize,
    #[comptime] format: PlaneFormat,
) -> u32 {
    let scale = comptime!(if format.bits > 8 { 4.0f32 } else { 1.0f32 });
    let luma_samples = width * height;
    let cw = width >> format.chroma_shift_x;
    let ch = height >> format.chroma_shift_y;
    let chroma = cw * ch;
    let mut plane = 0u32;
    let mut i = index;
    if i >= luma_samples {
        i -= luma_samples;
        plane = 1 + i / chroma;
        i %= chroma;
    }
    let mut value = 0u32;
    if comptime!(format.packed) {
        // B, G, R, 0.
        let c = index % 4;
        let p = frame_pixel + (index / 4) as usize;
        if c < 3 {
            value = quantize(channel(input, p, channels, (2 - c) as usize) * 255.0f32);
        }
    } else if comptime!(format.rgb) {
        // FFmpeg's planar RGB order: G, B, R.
        let c = select(plane == 0, 1usize, select(plane == 1, 2usize, 0usize));
        let max = comptime!(((1u32 << format.bits) - 1) as f32);
        value = quantize(channel(input, frame_pixel + i as usize, channels, c) * max);
    } else if plane == 0 {
        let p = frame_pixel + i as usize;
        let y = KR * channel(input, p, channels, 0)
            + KG * channel(input, p, channels, 1)
            + KB * channel(input, p, channels, 2);
        value = quantize(scale * (16.0f32 + 219.0f32 * y));
    } else {
        let row = i / cw;
        let col = i % cw;
        let mut r = 0.0f32;
        let mut g = 0.0f32;
        let mut b = 0.0f32;
        #[unroll]
        for dy in 0..(1u32 << format.chroma_shift_y) {
            #[unroll]
            for dx in 0..(1u32 << format.chroma_shift_x) {
                let y = (row << format.chroma_shift_y) + dy;
                let x = (col << format.chroma_shift_x) + dx;
                let p = frame_pixel + (y * width + x) as usize;
                r += channel(input, p, channels, 0);
                g += channel(input, p, channels, 1);
                b += channel(input, p, channels, 2);
            }
        }
        let n = comptime!((1u32 << (format.chroma_shift_x + format.chroma_shift_y)) as f32);
        r /= n;
        g /= n;
        b /= n;
        let mean_y = KR * r + KG * g + KB * b;
        // `select`, not a reassigned `let mut`: a binding initialised from constants is folded
        // at expansion and a runtime assignment to it would be lost.
        let cb = (b - mean_y) / (2.0f32 * (1.0f32 - KB));
        let cr = (r - mean_y) / (2.0f32 * (1.0f32 - KR));
        value = quantize(scale * (128.0f32 + 224.0f32 * select(plane == 2, cr, cb)));
    }
    value
}

#[cube(launch_unchecked)]
fn planes_kernel(
    input: &Array<f32>,
    output: &mut Array<u32>,
    width: u32,
    height: u32,
    channels: u32,
    samples: usize,
    #[comptime] format: PlaneFormat,
) {
    let word = ABSOLUTE_POS;
    if word < output.len() {
        let per_word = comptime!(if format.bits > 8 { 2u32 } else { 4u32 });
        let slot = comptime!(32 / if format.bits > 8 { 2u32 } else { 4u32 });
        let mut per_frame = (width * height
            + 2 * (width >> format.chroma_shift_x) * (height >> format.chroma_shift_y))
            as usize;
        if comptime!(format.packed) {
            per_frame = (4 * width * height) as usize;
        }
        let mut packed = 0u32;
        #[unroll]
        for j in 0..per_word {
            let s = word * per_word as usize + j as usize;
            if s < samples {
                let frame = s / per_frame;
                let index = (s % per_frame) as u32;
                let frame_pixel = frame * (width * height) as usize;
                let v = sample(input, frame_pixel, index, width, height, channels as usize, format);
                packed |= v << (j * slot);
            }
        }
        output[word] = packed;
    }
}

/// Converts `frames` frames `[frames, height, width, channels]` into `out`, which holds
/// [`PlaneFormat::words`] words.
pub fn planes<R: Runtime>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, height, width, channels): (usize, usize, usize, usize),
    format: PlaneFormat,
    out: &DeviceBuffer,
) {
    assert!(matches!(channels, 1 | 3 | 4), "planes take 1, 3 or 4 channels");
    assert!(format.check_size(width, height).is_ok(), "planes of an odd size");
    assert_eq!(input.len, frames * height * width * channels, "planes input size");
    assert_eq!(out.len, format.words(frames, width, height), "planes output size");
    if frames == 0 {
        return;
    }
    let samples = frames * format.samples_per_frame(width, height);
    // SAFETY: every read is a pixel of a frame below `frames`, every write below `out.len`.
    unsafe {
        planes_kernel::launch_unchecked(
            client,
            cube_count(client, out.len),
            cube_dim(),
            input.arg(),
            out.arg(),
            width as u32,
            height as u32,
            channels as u32,
            samples,
            format,
        );
    }
}

/// CPU reference of [`planes`]: the samples as bytes (little-endian at 10 bits).
pub fn planes_reference(
    input: &[f32],
    (frames, height, width, channels): (usize, usize, usize, usize),
    format: PlaneFormat,
) -> Vec<u8> {
    let (kr, kb) = (f64::from(KR), f64::from(KB));
    let kg = 1.0 - kr - kb;
    let scale = if format.bits > 8 { 4.0 } else { 1.0 };
    let rgb = |f: usize, y: usize, x: usize| -> [f64; 3] {
        let p = (f * height + y) * width + x;
        [0, 1, 2].map(|c| {
            let v = f64::from(input[if channels == 1 { p } else { p * channels + c }]);
            if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) }
        })
    };
    let mut out = Vec::with_capacity(frames * format.bytes_per_frame(width, height));
    let mut push = |v: f64| {
        let q = (v + 0.5).floor() as u16;
        if format.bits > 8 {
            out.extend_from_slice(&q.to_le_bytes());
        } else {
            out.push(q as u8);
        }
    };
    let [_, (cw, ch), _] = format.plane_sizes(width, height);
    for f in 0..frames {
        if format.packed {
            for y in 0..height {
                for x in 0..width {
                    let [r, g, b] = rgb(f, y, x);
                    [b, g, r].iter().for_each(|v| push(v * 255.0));
                    push(0.0);
                }
            }
            continue;
        }
        if format.rgb {
            let max = f64::from((1u32 << format.bits) - 1);
            for c in [1, 2, 0] {
                for y in 0..height {
                    for x in 0..width {
                        push(rgb(f, y, x)[c] * max);
                    }
                }
            }
            continue;
        }
        for y in 0..height {
            for x in 0..width {
                let [r, g, b] = rgb(f, y, x);
                push(scale * (16.0 + 219.0 * (kr * r + kg * g + kb * b)));
            }
        }
        let (sx, sy) = (1 << format.chroma_shift_x, 1 << format.chroma_shift_y);
        for plane in [1, 2] {
            for cy in 0..ch {
                for cx in 0..cw {
                    let mut sum = [0.0; 3];
                    for dy in 0..sy {
                        for dx in 0..sx {
                            let p = rgb(f, cy * sy + dy, cx * sx + dx);
                            (0..3).for_each(|c| sum[c] += p[c]);
                        }
                    }
                    let [r, g, b] = sum.map(|s| s / (sx * sy) as f64);
                    let luma = kr * r + kg * g + kb * b;
                    let p = if plane == 1 {
                        (b - luma) / (2.0 * (1.0 - kb))
                    } else {
                        (r - luma) / (2.0 * (1.0 - kr))
                    };
                    push(scale * (128.0 + 224.0 * p));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, client};

    #[test]
    fn matches_reference() {
        let client = client();
        let mut rng = Rng::new(21);
        let formats = [
            PlaneFormat::YUV420P,
            PlaneFormat::YUV422P,
            PlaneFormat::YUV444P,
            PlaneFormat::YUV420P10,
            PlaneFormat::YUV422P10,
            PlaneFormat::YUV444P10,
            PlaneFormat::GBRP,
            PlaneFormat::GBRP10,
            PlaneFormat::BGR0,
        ];
        for (case, format) in formats.iter().cycle().take(27).enumerate() {
            let frames = rng.range(1, 3);
            let height = rng.range(1, 20) * 2;
            let width = rng.range(1, 20) * 2 + if format.chroma_shift_x == 0 { case % 2 } else { 0 };
            let channels = [1, 3, 4][case % 3];
            let mut data = rng.vec_f32(frames * height * width * channels, -0.1, 1.1);
            data[0] = f32::NAN;
            let input = DeviceBuffer::from_f32(&client, &data);
            let words = format.words(frames, width, height);
            let out = DeviceBuffer::from_u32(&client, &vec![0xA5A5_A5A5; words]);
            planes(&client, &input, (frames, height, width, channels), *format, &out);
            let mut got = client.read_one_unchecked(out.handle).to_vec();
            let want = planes_reference(&data, (frames, height, width, channels), *format);
            got.truncate(want.len());
            let step = format.bytes_per_sample();
            let what = format!("case {case}: {format:?} {frames}x{width}x{height}x{channels}");
            for (i, (g, w)) in got.chunks(step).zip(want.chunks(step)).enumerate() {
                let g = g.iter().rev().fold(0i32, |a, &b| a << 8 | i32::from(b));
                let w = w.iter().rev().fold(0i32, |a, &b| a << 8 | i32::from(b));
                // f32 and f64 may round differently right at a half step.
                assert!((g - w).abs() <= 1, "{what}: sample {i}: got {g}, want {w}");
            }
            let exact = got.chunks(step).zip(want.chunks(step)).filter(|(g, w)| g == w).count();
            assert!(exact * 100 >= want.len() / step * 99, "{what}: mostly exact");
        }
    }

    #[test]
    fn colour_bars_have_the_standard_values() {
        // 75 % bars and black/white in BT.709 limited range (ITU-R BT.709 / SMPTE RP 219).
        let bars: [([f32; 3], [u8; 3]); 4] = [
            ([1.0, 1.0, 1.0], [235, 128, 128]),
            ([0.0, 0.0, 0.0], [16, 128, 128]),
            ([0.75, 0.0, 0.0], [51, 109, 212]),
            ([0.0, 0.0, 0.75], [28, 212, 120]),
        ];
        for (rgb, yuv) in bars {
            let want = planes_reference(&rgb, (1, 1, 1, 3), PlaneFormat::YUV444P);
            assert_eq!(want, yuv, "{rgb:?}");
        }
    }
}
