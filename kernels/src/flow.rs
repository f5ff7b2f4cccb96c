//! The optical-flow operations of frame interpolation (RIFE): zero padding to the model's
//! multiple, backward warping, bilinear resizing of flow fields with their scaling, and the
//! final masked blend of the two warped frames.
//!
//! Frames are `[frames, height, width, stride]`; an operation reads and writes a slice of
//! channels `offset .. offset + channels` of each pixel ([`Slice`]), so a network's inputs
//! are written into one wide buffer instead of being concatenated.
//!
//! Conventions are PyTorch's: warping is `grid_sample(bilinear, padding_mode="border",
//! align_corners=True)` on a pixel grid displaced by the flow (sample at `x + flow_x`,
//! clamped to the frame); resizing is `interpolate(bilinear, align_corners=False)` with a
//! scale factor, so source coordinates are `(dst + 0.5) · ratio − 0.5`, clamped at 0.

use cubecl::prelude::*;

use crate::launch::{cube_count, cube_dim, product, to_u32};
use crate::{DeviceBuffer, Element};

/// Channels `offset ..` of every pixel of a `[frames, height, width, stride]` buffer.
#[derive(Clone, Copy, Debug)]
pub struct Slice<'a> {
    pub buffer: &'a DeviceBuffer,
    pub stride: usize,
    pub offset: usize,
}

impl<'a> Slice<'a> {
    /// Every channel of a buffer of `channels` per pixel.
    pub fn dense(buffer: &'a DeviceBuffer, channels: usize) -> Self {
        Self { buffer, stride: channels, offset: 0 }
    }

    /// Channels `offset ..` of a buffer of `stride` per pixel.
    pub fn at(buffer: &'a DeviceBuffer, stride: usize, offset: usize) -> Self {
        Self { buffer, stride, offset }
    }

    /// Checks that `pixels` pixels hold `channels` channels from the offset, in 32-bit indices.
    fn check<E: Element>(&self, pixels: usize, channels: usize, what: &str) {
        assert!(
            self.offset.checked_add(channels).is_some_and(|end| end <= self.stride),
            "{what}: channels past the stride"
        );
        assert!(product(&[pixels, self.stride], what) <= self.buffer.len(), "{what}: buffer size");
        assert!(self.buffer.len() < 1 << 31, "{what}: buffers over 2^31 elements");
        assert!(self.buffer.elem_bytes() == size_of::<E>(), "{what}: another element type");
    }
}

/// Bilinear sample of channel `c` at (`sy`, `sx`), both inside the frame, of the frame whose
/// first pixel is `base`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn sample<F: Float>(src: &Array<F>, base: u32, width: u32, height: u32, stride: u32, at: u32, sy: f32, sx: f32) -> f32 {
    let y0f = f32::floor(sy);
    let x0f = f32::floor(sx);
    let (ay, ax) = (sy - y0f, sx - x0f);
    let y0 = u32::cast_from(y0f);
    let x0 = u32::cast_from(x0f);
    let y1 = min(y0 + 1, height - 1);
    let x1 = min(x0 + 1, width - 1);
    let v00 = f32::cast_from(src[((base + y0 * width + x0) * stride + at) as usize]);
    let v01 = f32::cast_from(src[((base + y0 * width + x1) * stride + at) as usize]);
    let v10 = f32::cast_from(src[((base + y1 * width + x0) * stride + at) as usize]);
    let v11 = f32::cast_from(src[((base + y1 * width + x1) * stride + at) as usize]);
    (1.0f32 - ay) * ((1.0f32 - ax) * v00 + ax * v01) + ay * ((1.0f32 - ax) * v10 + ax * v11)
}

/// `v` clamped to [0, `hi`]; NaN reads 0, so a poisoned flow never indexes out of the frame.
#[cube]
fn inside(v: f32, hi: f32) -> f32 {
    let low = select(v > 0.0f32, v, 0.0f32);
    select(low < hi, low, hi)
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn warp_kernel<F: Float>(
    src: &Array<F>,
    flow: &Array<F>,
    out: &mut Array<F>,
    pixels: u32,
    height: u32,
    width: u32,
    channels: u32,
    src_stride: u32,
    src_offset: u32,
    flow_stride: u32,
    flow_offset: u32,
    out_stride: u32,
    out_offset: u32,
) {
    let p = ABSOLUTE_POS;
    if p < pixels as usize {
        let p = p as u32;
        let plane = height * width;
        let base = (p / plane) * plane;
        let y = (p % plane) / width;
        let x = p % width;
        let f = (p * flow_stride + flow_offset) as usize;
        let sx = inside(f32::cast_from(x) + f32::cast_from(flow[f]), f32::cast_from(width - 1));
        let sy = inside(f32::cast_from(y) + f32::cast_from(flow[f + 1]), f32::cast_from(height - 1));
        for c in 0..channels {
            let v = sample::<F>(src, base, width, height, src_stride, src_offset + c, sy, sx);
            out[(p * out_stride + out_offset + c) as usize] = F::cast_from(v);
        }
    }
}

/// Backward warp: `out[y, x] = src(y + flow_y, x + flow_x)`, bilinear, coordinates clamped to
/// the frame (border padding), for `channels` channels of `n` frames `h × w`; the flow's
/// channels are (x, y) at its offset. `out` must not overlap what is read.
pub fn warp<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    src: Slice,
    channels: usize,
    flow: Slice,
    out: Slice,
    (n, h, w): (usize, usize, usize),
) {
    let pixels = product(&[n, h, w], "warp pixels");
    src.check::<E>(pixels, channels, "warp source");
    flow.check::<E>(pixels, 2, "warp flow");
    out.check::<E>(pixels, channels, "warp output");
    if pixels == 0 || channels == 0 {
        return;
    }
    // SAFETY: samples are clamped inside each frame (NaN reads the first pixel), and the
    // slices were checked to hold every pixel's channels.
    unsafe {
        warp_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, pixels),
            cube_dim(),
            src.buffer.arg_of::<R, E>(client),
            flow.buffer.arg_of::<R, E>(client),
            out.buffer.arg_of::<R, E>(client),
            pixels as u32,
            h as u32,
            w as u32,
            channels as u32,
            src.stride as u32,
            src.offset as u32,
            flow.stride as u32,
            flow.offset as u32,
            out.stride as u32,
            out.offset as u32,
        );
    }
}

/// How [`resize`] treats values: channels `first .. first + count` multiplied by `factor`
/// (a flow field's displacements follow its resolution); channels `0 .. added` added to the
/// output (a running flow), the others written over it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    pub first: usize,
    pub count: usize,
    pub factor: f32,
    pub added: usize,
}

impl Scaling {
    /// Values as they are, written over the output.
    pub const NONE: Scaling = Scaling { first: 0, count: 0, factor: 1.0, added: 0 };
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn resize_kernel<F: Float>(
    input: &Array<F>,
    out: &mut Array<F>,
    pixels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    channels: u32,
    in_stride: u32,
    in_offset: u32,
    out_stride: u32,
    out_offset: u32,
    ratio_y: f32,
    ratio_x: f32,
    scaled_first: u32,
    scaled_end: u32,
    factor: f32,
    added: u32,
) {
    let p = ABSOLUTE_POS;
    if p < pixels as usize {
        let p = p as u32;
        let plane = out_h * out_w;
        let frame = p / plane;
        let y = (p % plane) / out_w;
        let x = p % out_w;
        // Past the last row (upsampling) both taps read it.
        let sy = inside((f32::cast_from(y) + 0.5f32) * ratio_y - 0.5f32, f32::cast_from(in_h - 1));
        let sx = inside((f32::cast_from(x) + 0.5f32) * ratio_x - 0.5f32, f32::cast_from(in_w - 1));
        let base = frame * in_h * in_w;
        for c in 0..channels {
            let mut v = sample::<F>(input, base, in_w, in_h, in_stride, in_offset + c, sy, sx);
            if c >= scaled_first && c < scaled_end {
                v *= factor;
            }
            let o = (p * out_stride + out_offset + c) as usize;
            if c < added {
                v += f32::cast_from(out[o]);
            }
            out[o] = F::cast_from(v);
        }
    }
}

/// Bilinear resize of `channels` channels of `n` frames `in_h × in_w` to `out_h × out_w`,
/// reading `ratio` input pixels per output pixel down and across (PyTorch's `1 /
/// scale_factor`, or `in / out` for a given size), with the `scaling` of flow channels.
/// `out` must not overlap what is read.
#[allow(clippy::too_many_arguments)]
pub fn resize<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: Slice,
    (n, in_h, in_w): (usize, usize, usize),
    channels: usize,
    out: Slice,
    (out_h, out_w): (usize, usize),
    (ratio_y, ratio_x): (f32, f32),
    scaling: Scaling,
) {
    for ratio in [ratio_y, ratio_x] {
        assert!(ratio.is_finite() && ratio > 0.0, "resize: ratio {ratio}");
    }
    assert!(
        scaling.first.checked_add(scaling.count).is_some_and(|end| end <= channels) && scaling.added <= channels,
        "resize: scaled or added channels past the channels"
    );
    let pixels = product(&[n, out_h, out_w], "resize output pixels");
    input.check::<E>(product(&[n, in_h, in_w], "resize input pixels"), channels, "resize input");
    out.check::<E>(pixels, channels, "resize output");
    if pixels == 0 || channels == 0 {
        return;
    }
    assert!(in_h > 0 && in_w > 0, "resize: an empty input frame");
    // SAFETY: source coordinates are clamped inside each input frame, and the slices were
    // checked to hold every pixel's channels.
    unsafe {
        resize_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, pixels),
            cube_dim(),
            input.buffer.arg_of::<R, E>(client),
            out.buffer.arg_of::<R, E>(client),
            pixels as u32,
            in_h as u32,
            in_w as u32,
            out_h as u32,
            out_w as u32,
            channels as u32,
            input.stride as u32,
            input.offset as u32,
            out.stride as u32,
            out.offset as u32,
            ratio_y,
            ratio_x,
            scaling.first as u32,
            (scaling.first + scaling.count) as u32,
            scaling.factor,
            scaling.added as u32,
        );
    }
}

#[cube(launch_unchecked)]
fn fill_kernel<F: Float>(out: &mut Array<F>, values: u32, channels: u32, stride: u32, offset: u32, value: f32) {
    let i = ABSOLUTE_POS;
    if i < values as usize {
        let i = i as u32;
        out[((i / channels) * stride + offset + i % channels) as usize] = F::cast_from(value);
    }
}

/// Sets `channels` channels of `pixels` pixels to `value` (a network's constant input plane).
pub fn fill<R: Runtime, E: Element>(client: &ComputeClient<R>, out: Slice, pixels: usize, channels: usize, value: f32) {
    out.check::<E>(pixels, channels, "fill");
    let values = product(&[pixels, channels], "fill values");
    if values == 0 {
        return;
    }
    // SAFETY: the slice was checked to hold every pixel's channels.
    unsafe {
        fill_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, values),
            cube_dim(),
            out.buffer.arg_of::<R, E>(client),
            to_u32(values, "fill values"),
            channels as u32,
            out.stride as u32,
            out.offset as u32,
            value,
        );
    }
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn pad_kernel<A: Float, B: Float>(
    input: &Array<A>,
    out: &mut Array<B>,
    start: u32,
    values: u32,
    h: u32,
    w: u32,
    ph: u32,
    pw: u32,
    channels: u32,
    #[comptime] clamp_unit: bool,
) {
    let o = ABSOLUTE_POS;
    if o < values as usize {
        let o = o as u32;
        let c = o % channels;
        let px = o / channels;
        let x = px % pw;
        let y = (px / pw) % ph;
        let frame = px / (pw * ph);
        let mut v = B::new(0.0);
        if y < h && x < w {
            let mut u = f32::cast_from(input[(start + ((frame * h + y) * w + x) * channels + c) as usize]);
            if comptime!(clamp_unit) {
                u = clamp(u, 0.0f32, 1.0f32);
            }
            v = B::cast_from(u);
        }
        out[o as usize] = v;
    }
}

/// `n` frames `[h, w, c]` (elements `A`, from element `start` of `input`), clamped to [0, 1]
/// when asked, into the top-left corner of `[ph, pw, c]` frames (elements `B`), zeros
/// elsewhere.
#[allow(clippy::too_many_arguments)]
pub fn pad<R: Runtime, A: Element, B: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    start: usize,
    (n, h, w, c): (usize, usize, usize, usize),
    (ph, pw): (usize, usize),
    clamp_unit: bool,
    out: &DeviceBuffer,
) {
    assert!(ph >= h && pw >= w, "pad: a smaller frame");
    assert!(
        product(&[n, h, w, c], "pad input").checked_add(start).is_some_and(|end| end <= input.len()),
        "pad reads past the input"
    );
    assert!(input.len() < 1 << 31, "pad: buffers over 2^31 elements");
    let values = product(&[n, ph, pw, c], "pad output");
    assert_eq!(out.len(), values, "pad output size");
    assert!(values < 1 << 31, "pad: buffers over 2^31 elements");
    if values == 0 {
        return;
    }
    // SAFETY: reads stay inside each input frame; one write per output element.
    unsafe {
        pad_kernel::launch_unchecked::<A, B, R>(
            client,
            cube_count(client, values),
            cube_dim(),
            input.arg_of::<R, A>(client),
            out.arg_of::<R, B>(client),
            start as u32,
            values as u32,
            h as u32,
            w as u32,
            ph as u32,
            pw as u32,
            c as u32,
            clamp_unit,
        );
    }
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn blend_kernel<F: Float, G: Float>(
    first: &Array<F>,
    second: &Array<F>,
    motion: &Array<F>,
    out: &mut Array<G>,
    pixels: u32,
    h: u32,
    w: u32,
    ph: u32,
    pw: u32,
    channels: u32,
    motion_stride: u32,
    motion_offset: u32,
    out_start: u32,
) {
    let p = ABSOLUTE_POS;
    if p < pixels as usize {
        let p = p as u32;
        let frame = p / (h * w);
        let y = (p % (h * w)) / w;
        let x = p % w;
        let base = frame * ph * pw;
        let m = ((base + y * pw + x) * motion_stride + motion_offset) as usize;
        let (fy, fx) = (f32::cast_from(y), f32::cast_from(x));
        let (hi_y, hi_x) = (f32::cast_from(ph - 1), f32::cast_from(pw - 1));
        let sx0 = inside(fx + f32::cast_from(motion[m]), hi_x);
        let sy0 = inside(fy + f32::cast_from(motion[m + 1]), hi_y);
        let sx1 = inside(fx + f32::cast_from(motion[m + 2]), hi_x);
        let sy1 = inside(fy + f32::cast_from(motion[m + 3]), hi_y);
        let weight = 1.0f32 / (1.0f32 + f32::exp(0.0f32 - f32::cast_from(motion[m + 4])));
        for c in 0..channels {
            let a = sample::<F>(first, base, pw, ph, channels, c, sy0, sx0);
            let b = sample::<F>(second, base, pw, ph, channels, c, sy1, sx1);
            out[(out_start + p * channels + c) as usize] = G::cast_from(a * weight + b * (1.0f32 - weight));
        }
    }
}

/// The interpolated frame: `first` warped by flow (x, y) at the motion slice's offset and
/// `second` by the next two channels, blended by the sigmoid of the fifth:
/// `σ(m) · first' + (1 − σ(m)) · second'`. `first`, `second` are `n` dense `[ph, pw, c]`
/// frames (elements `E`); the top-left `h × w` of each result is written to `out` (elements
/// `O`, dense `[.., h, w, c]`) from element `out_start` on.
#[allow(clippy::too_many_arguments)]
pub fn blend<R: Runtime, E: Element, O: Element>(
    client: &ComputeClient<R>,
    first: &DeviceBuffer,
    second: &DeviceBuffer,
    motion: Slice,
    (n, ph, pw, c): (usize, usize, usize, usize),
    (h, w): (usize, usize),
    out: &DeviceBuffer,
    out_start: usize,
) {
    assert!(h <= ph && w <= pw, "blend: output larger than the frames");
    let padded = product(&[n, ph, pw], "blend frames");
    for frames in [first, second] {
        assert_eq!(frames.len(), product(&[padded, c], "blend frames"), "blend frame size");
        assert!(frames.elem_bytes() == size_of::<E>(), "blend: another element type");
    }
    motion.check::<E>(padded, 5, "blend motion");
    let pixels = product(&[n, h, w], "blend output");
    assert!(
        product(&[pixels, c], "blend output").checked_add(out_start).is_some_and(|end| end <= out.len()),
        "blend writes past the output"
    );
    assert!(out.len() < 1 << 31 && first.len() < 1 << 31, "blend: buffers over 2^31 elements");
    if pixels == 0 || c == 0 {
        return;
    }
    // SAFETY: samples are clamped inside each padded frame; the motion slice and the output
    // range were checked above.
    unsafe {
        blend_kernel::launch_unchecked::<E, O, R>(
            client,
            cube_count(client, pixels),
            cube_dim(),
            first.arg_of::<R, E>(client),
            second.arg_of::<R, E>(client),
            motion.buffer.arg_of::<R, E>(client),
            out.arg_of::<R, O>(client),
            pixels as u32,
            h as u32,
            w as u32,
            ph as u32,
            pw as u32,
            c as u32,
            motion.stride as u32,
            motion.offset as u32,
            out_start as u32,
        );
    }
}

/// CPU references in f64, over dense `[n, h, w, c]` frames.
pub mod reference {
    /// Bilinear sample of channel `ch` of frame `[h, w, c]` at (`sy`, `sx`) inside it.
    fn sample(frame: &[f64], (h, w, c): (usize, usize, usize), ch: usize, sy: f64, sx: f64) -> f64 {
        let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
        let (ay, ax) = (sy - y0 as f64, sx - x0 as f64);
        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
        let at = |y: usize, x: usize| frame[(y * w + x) * c + ch];
        (1.0 - ay) * ((1.0 - ax) * at(y0, x0) + ax * at(y0, x1)) + ay * ((1.0 - ax) * at(y1, x0) + ax * at(y1, x1))
    }

    /// PyTorch's `grid_sample(bilinear, border, align_corners=True)` of `src` on the grid
    /// displaced by `flow` (`[n, h, w, 2]`, x then y), with the grid normalised to [−1, 1] and
    /// back as PyTorch does.
    pub fn warp(src: &[f64], flow: &[f64], (n, h, w, c): (usize, usize, usize, usize)) -> Vec<f64> {
        let mut out = vec![0.0; n * h * w * c];
        let unit = |i: usize, len: usize| -1.0 + 2.0 * i as f64 / (len as f64 - 1.0);
        for f in 0..n {
            let frame = &src[f * h * w * c..(f + 1) * h * w * c];
            for y in 0..h {
                for x in 0..w {
                    let p = (f * h + y) * w + x;
                    let gx = unit(x, w) + flow[2 * p] / ((w as f64 - 1.0) / 2.0);
                    let gy = unit(y, h) + flow[2 * p + 1] / ((h as f64 - 1.0) / 2.0);
                    let sx = ((gx + 1.0) / 2.0 * (w as f64 - 1.0)).clamp(0.0, w as f64 - 1.0);
                    let sy = ((gy + 1.0) / 2.0 * (h as f64 - 1.0)).clamp(0.0, h as f64 - 1.0);
                    for ch in 0..c {
                        out[p * c + ch] = sample(frame, (h, w, c), ch, sy, sx);
                    }
                }
            }
        }
        out
    }

    /// PyTorch's `interpolate(bilinear, align_corners=False)` to `out_h × out_w`, reading
    /// `ratio` input pixels per output pixel down and across.
    pub fn resize(
        x: &[f64],
        (n, h, w, c): (usize, usize, usize, usize),
        (out_h, out_w): (usize, usize),
        (ratio_y, ratio_x): (f64, f64),
    ) -> Vec<f64> {
        let mut out = vec![0.0; n * out_h * out_w * c];
        let source = |d: usize, len: usize, ratio: f64| (((d as f64 + 0.5) * ratio - 0.5).max(0.0)).min(len as f64 - 1.0);
        for f in 0..n {
            let frame = &x[f * h * w * c..(f + 1) * h * w * c];
            for y in 0..out_h {
                for xx in 0..out_w {
                    for ch in 0..c {
                        out[((f * out_h + y) * out_w + xx) * c + ch] =
                            sample(frame, (h, w, c), ch, source(y, h, ratio_y), source(xx, w, ratio_x));
                    }
                }
            }
        }
        out
    }

    /// `σ(m) · warp(first, flow₀) + (1 − σ(m)) · warp(second, flow₁)`; `motion` is `[n, h, w,
    /// 5]` (flow₀ x, y, flow₁ x, y, m).
    pub fn blend(first: &[f64], second: &[f64], motion: &[f64], (n, h, w, c): (usize, usize, usize, usize)) -> Vec<f64> {
        let pick = |k: usize| motion.chunks(5).flat_map(|m| [m[k], m[k + 1]]).collect::<Vec<_>>();
        let a = warp(first, &pick(0), (n, h, w, c));
        let b = warp(second, &pick(2), (n, h, w, c));
        let mut out = vec![0.0; a.len()];
        for (p, m) in motion.chunks(5).enumerate() {
            let weight = 1.0 / (1.0 + (-m[4]).exp());
            for ch in 0..c {
                out[p * c + ch] = a[p * c + ch] * weight + b[p * c + ch] * (1.0 - weight);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, has_f16, poisoned, read_as_f32, rounded};

    fn widen(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| f64::from(x)).collect()
    }

    /// Channels `offset .. offset + c` of a `[pixels, stride]` buffer, densely.
    fn channels_of(v: &[f32], stride: usize, offset: usize, c: usize) -> Vec<f32> {
        v.chunks(stride).flat_map(|p| p[offset..offset + c].to_vec()).collect()
    }

    #[test]
    fn warp_matches_grid_sample() {
        check_warp::<f32>(2e-5);
        if has_f16() {
            check_warp::<half::f16>(1e-2);
        }
    }

    fn check_warp<E: Element>(tolerance: f64) {
        let client = client();
        let mut rng = Rng::new(5);
        for (n, h, w, c) in [(1, 5, 7, 3), (2, 9, 4, 8), (1, 17, 33, 1)] {
            let src = rounded::<E>(rng.vec_f32(n * h * w * c, -1.0, 1.0));
            // Displacements well past the borders, fractional, and a NaN.
            let mut flow = rounded::<E>(rng.vec_f32(n * h * w * 2, -1.5 * w as f64, 1.5 * w as f64));
            flow[3] = f32::NAN;
            // The source as channels 2.. of 2 + c + 1, the flow at 1 of 4, the output at 1 of c + 2.
            let wide: Vec<f32> = src.chunks(c).flat_map(|p| [[0.5, 0.5].as_slice(), p, &[0.5]].concat()).collect();
            let flow_wide: Vec<f32> = flow.chunks(2).flat_map(|f| [0.0, f[0], f[1], 0.0]).collect();
            let up = |v: &[f32]| DeviceBuffer::from_f32_as::<_, E>(&client, v);
            let (sb, fb) = (up(&wide), up(&flow_wide));
            let out = poisoned::<E>(&client, n * h * w * (c + 2));
            warp::<_, E>(&client, Slice::at(&sb, c + 3, 2), c, Slice::at(&fb, 4, 1), Slice::at(&out, c + 2, 1), (n, h, w));
            let got = channels_of(&read_as_f32::<E>(&client, out.handle().clone()), c + 2, 1, c);
            // The NaN pixel reads frame 0's first pixel in x; the reference is told the same.
            let mut clean = widen(&flow);
            clean[3] = -1e9;
            let want = reference::warp(&widen(&src), &clean, (n, h, w, c));
            assert_close(&got, &want, tolerance, &format!("warp {n}x{h}x{w}x{c}"));
        }
    }

    #[test]
    fn resize_matches_interpolate() {
        check_resize::<f32>(2e-5);
        if has_f16() {
            check_resize::<half::f16>(1e-2);
        }
    }

    fn check_resize<E: Element>(tolerance: f64) {
        let client = client();
        let mut rng = Rng::new(6);
        // Down by 8 and 2, up by 4 and 2, same size, a thumbnail of another aspect.
        for (n, (h, w), (oh, ow), ratio) in [
            (1, (32, 64), (4, 8), (8.0, 8.0)),
            (2, (6, 10), (3, 5), (2.0, 2.0)),
            (1, (5, 3), (20, 12), (0.25, 0.25)),
            (1, (4, 6), (8, 12), (0.5, 0.5)),
            (1, (3, 5), (3, 5), (1.0, 1.0)),
            (1, (19, 45), (8, 8), (19.0 / 8.0, 45.0 / 8.0)),
        ] {
            let c = 6;
            let x = rounded::<E>(rng.vec_f32(n * h * w * c, -2.0, 2.0));
            let prior = rounded::<E>(rng.vec_f32(n * oh * ow * (c + 1), -1.0, 1.0));
            let up = |v: &[f32]| DeviceBuffer::from_f32_as::<_, E>(&client, v);
            let xb = up(&x);
            let plain = reference::resize(&widen(&x), (n, h, w, c), (oh, ow), ratio);
            // Channels 1..5 times 1/ratio; 0..3 added to channels 1.. of the prior output,
            // the rest written over it.
            let scaling = Scaling { first: 1, count: 4, factor: (1.0 / ratio.0) as f32, added: 3 };
            let out = up(&prior);
            resize::<_, E>(&client, Slice::dense(&xb, c), (n, h, w), c, Slice::at(&out, c + 1, 1), (oh, ow), (ratio.0 as f32, ratio.1 as f32), scaling);
            let got = read_as_f32::<E>(&client, out.handle().clone());
            let want: Vec<f64> = prior
                .chunks(c + 1)
                .zip(plain.chunks(c))
                .flat_map(|(p, v)| {
                    let mut o = vec![f64::from(p[0])];
                    o.extend((0..c).map(|k| {
                        let prior = if k < 3 { f64::from(p[k + 1]) } else { 0.0 };
                        prior + v[k] * if (1..5).contains(&k) { 1.0 / ratio.0 } else { 1.0 }
                    }));
                    o
                })
                .collect();
            assert_close(&got, &want, tolerance, &format!("resize {h}x{w} → {oh}x{ow}"));
            // Written over, unscaled.
            let out = poisoned::<E>(&client, n * oh * ow * c);
            resize::<_, E>(&client, Slice::dense(&xb, c), (n, h, w), c, Slice::dense(&out, c), (oh, ow), (ratio.0 as f32, ratio.1 as f32), Scaling::NONE);
            assert_close(&read_as_f32::<E>(&client, out.handle().clone()), &plain, tolerance, "resize, plain");
        }
    }

    #[test]
    fn pad_and_blend_match_references() {
        let client = client();
        let mut rng = Rng::new(7);
        let (n, h, w, c, ph, pw) = (2, 5, 7, 3, 8, 8);
        let frames = rng.vec_f32(n * h * w * c, -0.2, 1.2);
        // After one value of something else; clamped and not.
        let input = DeviceBuffer::from_f32(&client, &[[7.0].as_slice(), &frames].concat());
        let padded = poisoned::<f32>(&client, n * ph * pw * c);
        for clamp_unit in [false, true] {
            pad::<_, f32, f32>(&client, &input, 1, (n, h, w, c), (ph, pw), clamp_unit, &padded);
            let got = read_as_f32::<f32>(&client, padded.handle().clone());
            for (i, v) in got.iter().enumerate() {
                let (x, y, f) = ((i / c) % pw, (i / c / pw) % ph, i / c / pw / ph);
                let mut want = if y < h && x < w { frames[((f * h + y) * w + x) * c + i % c] } else { 0.0 };
                if clamp_unit {
                    want = want.clamp(0.0, 1.0);
                }
                assert_eq!(*v, want, "pad, element {i}");
            }
        }

        let flows = rng.vec_f32(n * ph * pw * 5, -6.0, 6.0);
        let wide: Vec<f32> = flows.chunks(5).flat_map(|m| [[0.25, 0.25].as_slice(), m].concat()).collect();
        let motion = DeviceBuffer::from_f32(&client, &wide);
        let second = DeviceBuffer::from_f32(&client, &rng.vec_f32(n * ph * pw * c, 0.0, 1.0));
        let out = poisoned::<f32>(&client, 1 + n * h * w * c);
        blend::<_, f32, f32>(&client, &padded, &second, Slice::at(&motion, 7, 2), (n, ph, pw, c), (h, w), &out, 1);
        let got = read_as_f32::<f32>(&client, out.handle().clone());
        assert!(got[0].is_nan(), "blend wrote before its start");
        let second = read_as_f32::<f32>(&client, second.handle().clone());
        let full = reference::blend(&widen(&read_as_f32::<f32>(&client, padded.handle().clone())), &widen(&second), &widen(&flows), (n, ph, pw, c));
        let want: Vec<f64> = (0..n * h * w * c)
            .map(|i| {
                let (x, y, f) = ((i / c) % w, (i / c / w) % h, i / c / w / h);
                full[((f * ph + y) * pw + x) * c + i % c]
            })
            .collect();
        assert_close(&got[1..], &want, 2e-5, "blend");
    }

    #[test]
    fn fill_writes_only_its_channels() {
        let client = client();
        let out = DeviceBuffer::from_f32(&client, &[9.0; 12]);
        fill::<_, f32>(&client, Slice::at(&out, 4, 1), 3, 2, 0.5);
        let got = read_as_f32::<f32>(&client, out.handle().clone());
        assert_eq!(got, [9.0, 0.5, 0.5, 9.0].repeat(3));
    }
}
