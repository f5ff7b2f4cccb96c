//! f32 RGB frames → the planar 8- or 10-bit samples an encoder takes, on the device.
//!
//! Y'CbCr uses BT.709 in limited range (Y' 16–235, C 16–240 at 8 bits, ×4 at 10 bits);
//! subsampled chroma is the mean of its block of pixels. Planar RGB (`gbrp`) is full range in
//! FFmpeg's plane order G, B, R; packed `bgr0` (what FFV1 takes for 8-bit RGB) is one plane of
//! B, G, R, 0 bytes. Greyscale is replicated, alpha dropped, values clamped; NaN and infinities
//! read as 0 and flag their frame. Samples are packed little-endian into `u32` words (4 bytes
//! or 2 `u16` a word), frame after frame, each frame plane after plane, so only the samples are
//! read back.

use cubecl::prelude::*;

use crate::DeviceBuffer;
use crate::launch::{cube_count, cube_dim, product};

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

/// Channel `ch` (0 R, 1 G, 2 B) of pixel `pixel`, clamped to [0, 1]; NaN and infinities read
/// as 0 and raise the frame's flag (every flag write stores 1, so the race is benign).
#[cube]
fn channel(
    input: &Array<f32>,
    pixel: usize,
    channels: usize,
    ch: usize,
    flags: &mut Array<u32>,
    frame: usize,
) -> f32 {
    let mut at = pixel;
    if channels != 1 {
        at = pixel * channels + ch;
    }
    let v = input[at];
    let mut out = 0.0f32;
    if f32::is_nan(v) || f32::is_inf(v) {
        flags[frame] = 1u32;
    } else {
        out = clamp(v, 0.0f32, 1.0f32);
    }
    out
}

#[cube]
fn quantize(v: f32) -> u32 {
    u32::cast_from(f32::floor(v + 0.5f32))
}

/// The sample at (`row`, `col`) of plane `plane` of frame `frame`.
#[cube]
#[allow(unused_assignments)]
fn sample(
    input: &Array<f32>,
    flags: &mut Array<u32>,
    frame: usize,
    plane: u32,
    row: u32,
    col: u32,
    width: u32,
    height: u32,
    channels: usize,
    #[comptime] format: PlaneFormat,
) -> u32 {
    let scale = comptime!(if format.bits > 8 { 4.0f32 } else { 1.0f32 });
    let frame_pixel = frame * (width * height) as usize;
    let mut value = 0u32;
    if comptime!(format.rgb) {
        // FFmpeg's planar RGB order: G, B, R.
        let c = select(plane == 0, 1usize, select(plane == 1, 2usize, 0usize));
        let max = comptime!(((1u32 << format.bits) - 1) as f32);
        let p = frame_pixel + (row * width + col) as usize;
        value = quantize(channel(input, p, channels, c, flags, frame) * max);
    } else if plane == 0 {
        let p = frame_pixel + (row * width + col) as usize;
        let y = KR * channel(input, p, channels, 0, flags, frame)
            + KG * channel(input, p, channels, 1, flags, frame)
            + KB * channel(input, p, channels, 2, flags, frame);
        value = quantize(scale * (16.0f32 + 219.0f32 * y));
    } else {
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
                r += channel(input, p, channels, 0, flags, frame);
                g += channel(input, p, channels, 1, flags, frame);
                b += channel(input, p, channels, 2, flags, frame);
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

/// Any planar layout: one thread per output word, which may straddle rows, planes and frames.
#[cube(launch_unchecked)]
fn planes_any_kernel(
    input: &Array<f32>,
    output: &mut Array<u32>,
    flags: &mut Array<u32>,
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
        let luma = width * height;
        let cw = width >> format.chroma_shift_x;
        let chroma = cw * (height >> format.chroma_shift_y);
        let per_frame = (luma + 2 * chroma) as usize;
        let mut packed = 0u32;
        #[unroll]
        for j in 0..per_word {
            let s = word * per_word as usize + j as usize;
            if s < samples {
                let frame = s / per_frame;
                let mut i = (s % per_frame) as u32;
                let mut plane = 0u32;
                let mut plane_w = width;
                if i >= luma {
                    i -= luma;
                    plane = 1 + i / chroma;
                    i %= chroma;
                    plane_w = cw;
                }
                let v = sample(
                    input, flags, frame, plane, i / plane_w, i % plane_w, width, height,
                    channels as usize, format,
                );
                packed |= v << (j * slot);
            }
        }
        output[word] = packed;
    }
}

/// Whole words, each input read once: a thread takes the block of pixels behind one output
/// word of every plane — for Y'CbCr one chroma word (`spw` chroma samples of a row), the
/// `spw·2^sx × 2^sy` pixels under it and their luma words; for planar RGB `spw` pixels of a
/// row; for packed RGB one pixel. x is the block in its row, y the row of blocks, z the frame
/// of this launch. Used when every plane row is a whole number of words.
#[cube(launch_unchecked)]
fn planes_blocks_kernel(
    input: &Array<f32>,
    output: &mut Array<u32>,
    flags: &mut Array<u32>,
    width: u32,
    height: u32,
    channels: u32,
    blocks_x: u32,
    blocks_y: u32,
    first_frame: u32,
    #[comptime] format: PlaneFormat,
) {
    let bx = ABSOLUTE_POS_X;
    let by = ABSOLUTE_POS_Y;
    if bx < blocks_x && by < blocks_y {
        let frame = (first_frame + ABSOLUTE_POS_Z) as usize;
        let spw = comptime!(if format.bits > 8 { 2u32 } else { 4u32 });
        let slot = comptime!(32 / if format.bits > 8 { 2u32 } else { 4u32 });
        let sx = comptime!(format.chroma_shift_x);
        let sy = comptime!(format.chroma_shift_y);
        let channels = channels as usize;
        let frame_pixel = frame * (width * height) as usize;
        let luma_words = width * height / spw;
        if comptime!(format.packed) {
            let p = frame_pixel + (by * width + bx) as usize;
            let r = quantize(channel(input, p, channels, 0, flags, frame) * 255.0f32);
            let g = quantize(channel(input, p, channels, 1, flags, frame) * 255.0f32);
            let b = quantize(channel(input, p, channels, 2, flags, frame) * 255.0f32);
            output[frame * (width * height) as usize + (by * width + bx) as usize] =
                b | (g << 8u32) | (r << 16u32);
        } else if comptime!(format.rgb) {
            let max = comptime!(((1u32 << format.bits) - 1) as f32);
            let mut g_word = 0u32;
            let mut b_word = 0u32;
            let mut r_word = 0u32;
            #[unroll]
            for j in 0..spw {
                let p = frame_pixel + (by * width + bx * spw + j) as usize;
                r_word |= quantize(channel(input, p, channels, 0, flags, frame) * max) << (j * slot);
                g_word |= quantize(channel(input, p, channels, 1, flags, frame) * max) << (j * slot);
                b_word |= quantize(channel(input, p, channels, 2, flags, frame) * max) << (j * slot);
            }
            let at = frame * (3 * luma_words) as usize + (by * (width / spw) + bx) as usize;
            output[at] = g_word;
            output[at + luma_words as usize] = b_word;
            output[at + 2 * luma_words as usize] = r_word;
        } else {
            let scale = comptime!(if format.bits > 8 { 4.0f32 } else { 1.0f32 });
            let cw = width >> sx;
            let chroma_words = cw * (height >> sy) / spw;
            let frame_word = frame * (luma_words + 2 * chroma_words) as usize;
            let luma_row_words = width / spw;
            let mut sums = Array::<f32>::new(comptime!((3 * spw) as usize));
            #[unroll]
            for i in 0..3 * spw {
                sums[i as usize] = 0.0f32;
            }
            #[unroll]
            for dy in 0..(1u32 << sy) {
                let y = (by << sy) + dy;
                #[unroll]
                for lw in 0..(1u32 << sx) {
                    let word_x = (bx << sx) + lw;
                    let mut word = 0u32;
                    #[unroll]
                    for j in 0..spw {
                        let p = frame_pixel + (y * width + word_x * spw + j) as usize;
                        let r = channel(input, p, channels, 0, flags, frame);
                        let g = channel(input, p, channels, 1, flags, frame);
                        let b = channel(input, p, channels, 2, flags, frame);
                        let luma = KR * r + KG * g + KB * b;
                        word |= quantize(scale * (16.0f32 + 219.0f32 * luma)) << (j * slot);
                        let k = ((lw * spw + j) >> sx) as usize;
                        sums[3 * k] += r;
                        sums[3 * k + 1] += g;
                        sums[3 * k + 2] += b;
                    }
                    output[frame_word + (y * luma_row_words + word_x) as usize] = word;
                }
            }
            let n = comptime!((1u32 << (format.chroma_shift_x + format.chroma_shift_y)) as f32);
            let mut cb_word = 0u32;
            let mut cr_word = 0u32;
            #[unroll]
            for k in 0..spw {
                let r = sums[(3 * k) as usize] / n;
                let g = sums[(3 * k + 1) as usize] / n;
                let b = sums[(3 * k + 2) as usize] / n;
                let mean_y = KR * r + KG * g + KB * b;
                let cb = (b - mean_y) / (2.0f32 * (1.0f32 - KB));
                let cr = (r - mean_y) / (2.0f32 * (1.0f32 - KR));
                cb_word |= quantize(scale * (128.0f32 + 224.0f32 * cb)) << (k * slot);
                cr_word |= quantize(scale * (128.0f32 + 224.0f32 * cr)) << (k * slot);
            }
            let chroma_at = frame_word + (luma_words + by * (cw / spw) + bx) as usize;
            output[chroma_at] = cb_word;
            output[chroma_at + chroma_words as usize] = cr_word;
        }
    }
}

/// Converts `frames` frames `[frames, height, width, channels]` into `out`, which holds
/// [`PlaneFormat::words`] words, and sets `flags[f]` to 1 for every frame `f` holding NaN or
/// infinite values (`flags` holds `frames` words and must be zeroed).
pub fn planes<R: Runtime>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, height, width, channels): (usize, usize, usize, usize),
    format: PlaneFormat,
    out: &DeviceBuffer,
    flags: &DeviceBuffer,
) {
    assert!(matches!(channels, 1 | 3 | 4), "planes take 1, 3 or 4 channels");
    assert!(format.check_size(width, height).is_ok(), "planes of an odd size");
    assert_eq!(input.len(), product(&[frames, height, width, channels], "planes input"), "planes input size");
    assert_eq!(out.len(), format.words(frames, width, height), "planes output size");
    assert_eq!(flags.len(), frames, "planes flags size");
    if frames == 0 {
        return;
    }
    let bps = format.bytes_per_sample();
    let sizes = format.plane_sizes(width, height);
    // Packed RGB rows are always whole words.
    let aligned = sizes.iter().all(|(w, _)| (w * bps).is_multiple_of(4));
    if !aligned {
        let samples = frames * format.samples_per_frame(width, height);
        // SAFETY: every read is a pixel of a frame below `frames`, every write below
        // `out.len()` or `frames`.
        unsafe {
            planes_any_kernel::launch_unchecked(
                client,
                cube_count(client, out.len()),
                cube_dim(),
                input.arg_of::<R, f32>(client),
                out.arg_of::<R, u32>(client),
                flags.arg_of::<R, u32>(client),
                width as u32,
                height as u32,
                channels as u32,
                samples,
                format,
            );
        }
        return;
    }
    let spw = 4 / bps;
    let (blocks_x, blocks_y) = if format.packed {
        (width, height)
    } else if format.rgb {
        (width / spw, height)
    } else {
        ((width >> format.chroma_shift_x) / spw, height >> format.chroma_shift_y)
    };
    let max_z = client.properties().hardware.max_cube_count.2 as usize;
    for first in (0..frames).step_by(max_z.max(1)) {
        let group = (frames - first).min(max_z) as u32;
        let count = CubeCount::Static((blocks_x as u32).div_ceil(64), blocks_y as u32, group);
        // SAFETY: as above; the grid covers exactly the blocks of whole words.
        unsafe {
            planes_blocks_kernel::launch_unchecked(
                client,
                count,
                CubeDim::new_1d(64),
                input.arg_of::<R, f32>(client),
                out.arg_of::<R, u32>(client),
                flags.arg_of::<R, u32>(client),
                width as u32,
                height as u32,
                channels as u32,
                blocks_x as u32,
                blocks_y as u32,
                first as u32,
                format,
            );
        }
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
            if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 }
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
        for (case, format) in formats.iter().cycle().take(45).enumerate() {
            let frames = rng.range(1, 3);
            let height = rng.range(1, 20) * 2;
            // Odd, even and multiple-of-8 widths reach both kernels.
            let width = match case % 3 {
                0 => rng.range(1, 6) * 8,
                1 => rng.range(1, 20) * 2,
                _ => rng.range(1, 20) * 2 + usize::from(format.chroma_shift_x == 0),
            };
            let channels = [1, 3, 4][case / 3 % 3];
            let mut data = rng.vec_f32(frames * height * width * channels, -0.1, 1.1);
            // A NaN in the first frame and an infinity in the last, in a colour channel.
            data[0] = f32::NAN;
            let last = data.len() - channels;
            data[last] = f32::INFINITY;
            let input = DeviceBuffer::from_f32(&client, &data);
            let words = format.words(frames, width, height);
            let out = DeviceBuffer::from_u32(&client, &vec![0xA5A5_A5A5; words]);
            let flags = DeviceBuffer::from_u32(&client, &vec![0; frames]);
            planes(&client, &input, (frames, height, width, channels), *format, &out, &flags);
            let flags = u32::from_bytes(&client.read_one_unchecked(flags.handle().clone())).to_vec();
            let mut want_flags = vec![0; frames];
            want_flags[0] = 1;
            want_flags[frames - 1] = 1;
            assert_eq!(flags, want_flags, "case {case}: non-finite frames");
            let mut got = client.read_one_unchecked(out.handle().clone()).to_vec();
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
