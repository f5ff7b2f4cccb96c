//! Moves between space, time and channels, on channel-last frames `[frame, y, x, channel]`:
//! 3-D depth-to-space of any stride (with the first-frame drop and the residual channel repeat
//! of the LTX upsamplers, the element-wise channel repeat of Wan 2.2's shortcut, and the
//! block-major split of Wan's time upsampler), unpatchify, 2-D pixel shuffle and unshuffle,
//! nearest upsampling.
//!
//! One thread per output value; every output is written exactly once.

use cubecl::prelude::*;

use crate::{DeviceBuffer, Element};
use crate::launch::{cube_count, cube_dim, product};

/// The layouts, as one kernel's compile-time switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    /// With stride `(st, sh, sw)`, `S = st·sh·sw`, the digit `g = a·sh·sw + b·sw + d` and the
    /// input's channels repeated element-wise `R` times (`factor`; `V = C·R` of them):
    /// `U[st·t+a, sh·y+b, sw·x+d, c] = X[t, y, x, ⌊k / R⌋]` with `k = S(c mod V/S) + g`, or
    /// `k = g·V/S + (c mod V/S)` when `block_major`; frame 0 dropped when `drop_first`.
    DepthToSpace3d { drop_first: bool, block_major: bool, st: u32, sh: u32, sw: u32 },
    /// `out[t, 4i+q, 4j+r, c] = y[t, i, j, 16c + 4r + q]`, optionally `clamp((v+1)/2, 0, 1)`.
    Unpatchify { to_unit: bool },
    /// `out[y·s+i, x·s+j, c] = in[y, x, c·s² + i·s + j]`.
    PixelShuffle,
    /// `out[y, x, c·s² + i·s + j] = in[y·s+i, x·s+j, c]`.
    PixelUnshuffle,
    /// `out[y·s+i, x·s+j, c] = in[y, x, c]`.
    Nearest,
    /// `out[y, x, c] = in[reflect(y), reflect(x), c]`: the frame padded at the bottom and
    /// right by reflection (row h reads row h − 2).
    ReflectPad,
}

#[cube(launch_unchecked)]
#[allow(unused_assignments)]
fn layout_kernel<F: Float>(
    input: &Array<F>,
    output: &mut Array<F>,
    out_h: u32,
    out_w: u32,
    out_c: u32,
    in_h: u32,
    in_w: u32,
    in_c: u32,
    factor: u32,
    #[comptime] op: Op,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let c = (o % out_c as usize) as u32;
        let pixel = o / out_c as usize;
        let x = (pixel % out_w as usize) as u32;
        let rest = pixel / out_w as usize;
        let y = (rest % out_h as usize) as u32;
        let t = (rest / out_h as usize) as u32;
        let mut src = 0usize;
        match comptime!(op) {
            Op::DepthToSpace3d { drop_first, block_major, st, sh, sw } => {
                let tt = t + comptime!(if drop_first { 1u32 } else { 0u32 });
                let digit = comptime!(sh * sw) * (tt % comptime!(st)) + comptime!(sw) * (y % comptime!(sh)) + x % comptime!(sw);
                let s = comptime!(st * sh * sw);
                let group = in_c * factor / s;
                let mut k = s * (c % group) + digit;
                if comptime!(block_major) {
                    k = digit * group + c % group;
                }
                let ci = k / factor;
                let (ty, tx) = (y / comptime!(sh), x / comptime!(sw));
                src = ((tt / comptime!(st) * in_h + ty) * in_w + tx) as usize * in_c as usize + ci as usize;
            }
            Op::Unpatchify { .. } => {
                let ci = c * factor * factor + factor * (x % factor) + y % factor;
                src = ((t * in_h + y / factor) * in_w + x / factor) as usize * in_c as usize + ci as usize;
            }
            Op::PixelShuffle => {
                let ci = c * factor * factor + (y % factor) * factor + x % factor;
                src = ((t * in_h + y / factor) * in_w + x / factor) as usize * in_c as usize + ci as usize;
            }
            Op::PixelUnshuffle => {
                let plane = c % (factor * factor);
                let ci = c / (factor * factor);
                let sy = y * factor + plane / factor;
                let sx = x * factor + plane % factor;
                src = ((t * in_h + sy) * in_w + sx) as usize * in_c as usize + ci as usize;
            }
            Op::Nearest => {
                src = ((t * in_h + y / factor) * in_w + x / factor) as usize * in_c as usize + c as usize;
            }
            Op::ReflectPad => {
                let sy = select(y < in_h, y, 2 * in_h - 2 - y);
                let sx = select(x < in_w, x, 2 * in_w - 2 - x);
                src = ((t * in_h + sy) * in_w + sx) as usize * in_c as usize + c as usize;
            }
        }
        let v = input[src];
        if comptime!(matches!(op, Op::Unpatchify { to_unit: true })) {
            let unit = clamp((f32::cast_from(v) + 1.0f32) * 0.5f32, 0.0f32, 1.0f32);
            output[o] = F::cast_from(unit);
        } else {
            output[o] = v;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn launch<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (in_h, in_w, in_c): (usize, usize, usize),
    out: &DeviceBuffer,
    (out_frames, out_h, out_w, out_c): (usize, usize, usize, usize),
    factor: usize,
    op: Op,
) {
    assert_eq!(out.len(), product(&[out_frames, out_h, out_w, out_c], "layout output"), "{op:?}: output size");
    if out.is_empty() {
        return;
    }
    // SAFETY: the callers check that every source index lies inside `input`.
    unsafe {
        layout_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            input.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            out_h as u32,
            out_w as u32,
            out_c as u32,
            in_h as u32,
            in_w as u32,
            in_c as u32,
            factor as u32,
            op,
        );
    }
}

/// Depth-to-space with stride `(st, sh, sw)` (each 1 or 2) of `frames` frames
/// `[frames, h, w, c]`, `c` a multiple of `S = st·sh·sw`: channel `S·c' + a·sh·sw + b·sw + d`
/// moves to frame `st·t + a`, row `sh·y + b`, column `sw·x + d` of channel `c'` (the time digit
/// outermost, as LTX's upsamplers shuffle). The `c/S` channels are tiled `repeat` times (the
/// LTX residual path; 1 for the convolution path) and frame 0 is dropped when `drop_first`.
/// Output `[st·frames − drop, sh·h, sw·w, c/S · repeat]`.
#[allow(clippy::too_many_arguments)]
pub fn depth_to_space_3d<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, h, w, c): (usize, usize, usize, usize),
    (st, sh, sw): (usize, usize, usize),
    repeat: usize,
    drop_first: bool,
    out: &DeviceBuffer,
) {
    let s = st * sh * sw;
    assert!(c % s == 0 && c > 0, "depth-to-space needs a multiple of {s} channels");
    let out_c = product(&[c / s, repeat], "depth-to-space channels");
    shuffle_3d::<R, E>(client, input, (frames, h, w, c), (st, sh, sw), (out_c, 1), drop_first, false, out);
}

/// Splits each frame of `[frames, h, w, channels]` into two frames of `c = channels/2`
/// channels, the first `c` channels giving the earlier frame: `out[2t + a, y, x, ch] =
/// in[t, y, x, a·c + ch]` (Wan's time upsampler). Output `[2·frames, h, w, channels/2]`.
pub fn split_time_blocks<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, h, w, channels): (usize, usize, usize, usize),
    out: &DeviceBuffer,
) {
    assert!(channels > 0 && channels.is_multiple_of(2), "a time split needs an even channel count");
    shuffle_3d::<R, E>(client, input, (frames, h, w, channels), (2, 1, 1), (channels / 2, 1), false, true, out);
}

/// Wan 2.2's parameter-free up shortcut (`DupUp3D`): the `c` channels of `[frames, h, w, c]`
/// repeated element-wise `R = out_c·st·sh·sw / c` times, then depth-to-space with stride
/// `(st, sh, sw)` (time digit outermost): `out[st·t+a, sh·y+b, sw·x+d, o] =
/// in[t, y, x, ⌊(o·S + a·sh·sw + b·sw + d) / R⌋]`. Frame 0 dropped when `drop_first`.
/// Output `[st·frames − drop, sh·h, sw·w, out_c]`.
#[allow(clippy::too_many_arguments)]
pub fn repeat_depth_to_space_3d<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, h, w, c): (usize, usize, usize, usize),
    stride: (usize, usize, usize),
    out_c: usize,
    drop_first: bool,
    out: &DeviceBuffer,
) {
    let repeated = product(&[out_c, stride.0, stride.1, stride.2], "repeat depth-to-space channels");
    assert!(c > 0 && out_c > 0 && repeated.is_multiple_of(c), "channels repeat a whole number of times");
    shuffle_3d::<R, E>(client, input, (frames, h, w, c), stride, (out_c, repeated / c), drop_first, false, out);
}

/// The depth-to-space launches: `out_c` output channels from the input's channels repeated
/// element-wise `interleave` times (see [`Op::DepthToSpace3d`]).
#[allow(clippy::too_many_arguments)]
fn shuffle_3d<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, h, w, c): (usize, usize, usize, usize),
    (st, sh, sw): (usize, usize, usize),
    (out_c, interleave): (usize, usize),
    drop_first: bool,
    block_major: bool,
    out: &DeviceBuffer,
) {
    assert!([st, sh, sw].iter().all(|s| (1..=2).contains(s)), "depth-to-space strides are 1 or 2");
    assert_eq!(input.len(), product(&[frames, h, w, c], "depth-to-space input"), "depth-to-space input size");
    let out_frames = usize::saturating_sub(product(&[st, frames], "depth-to-space frames"), usize::from(drop_first));
    let (oh, ow) = (product(&[sh, h], "depth-to-space height"), product(&[sw, w], "depth-to-space width"));
    let op = Op::DepthToSpace3d { drop_first, block_major, st: st as u32, sh: sh as u32, sw: sw as u32 };
    launch::<R, E>(client, input, (h, w, c), out, (out_frames, oh, ow, out_c), interleave, op);
}

/// LTX unpatchify (patch p): `[frames, h, w, c·p²]` → `[frames, p·h, p·w, c]` with
/// `out[c, p·i+q, p·j+r] = in[c·p² + p·r + q, i, j]` (the width digit before the height
/// digit), optionally mapped from [−1, 1] to [0, 1] and clamped.
pub fn unpatchify<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (frames, h, w, c): (usize, usize, usize, usize),
    patch: usize,
    to_unit: bool,
    out: &DeviceBuffer,
) {
    let in_c = product(&[c, patch, patch], "unpatchify channels");
    assert_eq!(input.len(), product(&[frames, h, w, in_c], "unpatchify input"), "unpatchify input size");
    let shape = (frames, product(&[patch, h], "unpatchify height"), product(&[patch, w], "unpatchify width"), c);
    launch::<R, E>(client, input, (h, w, in_c), out, shape, patch, Op::Unpatchify { to_unit });
}

/// `[n, h, w, c·s²]` → `[n, h·s, w·s, c]`.
pub fn pixel_shuffle<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (n, h, w, c): (usize, usize, usize, usize),
    s: usize,
    out: &DeviceBuffer,
) {
    let s2 = product(&[s, s], "pixel shuffle factor");
    assert!(s > 0 && c % s2 == 0, "pixel shuffle needs a multiple of s² channels");
    assert_eq!(input.len(), product(&[n, h, w, c], "pixel shuffle input"), "pixel shuffle input size");
    let (oh, ow) = (product(&[h, s], "pixel shuffle height"), product(&[w, s], "pixel shuffle width"));
    launch::<R, E>(client, input, (h, w, c), out, (n, oh, ow, c / s2), s, Op::PixelShuffle);
}

/// `[n, h, w, c]` → `[n, h/u, w/u, c·u²]` (h and w multiples of u).
pub fn pixel_unshuffle<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (n, h, w, c): (usize, usize, usize, usize),
    u: usize,
    out: &DeviceBuffer,
) {
    assert!(u > 0 && h % u == 0 && w % u == 0, "pixel unshuffle needs sides that are multiples of u");
    assert_eq!(input.len(), product(&[n, h, w, c], "pixel unshuffle input"), "pixel unshuffle input size");
    let oc = product(&[c, u, u], "pixel unshuffle channels");
    launch::<R, E>(client, input, (h, w, c), out, (n, h / u, w / u, oc), u, Op::PixelUnshuffle);
}

/// Nearest upsampling by `s`: `[n, h, w, c]` → `[n, h·s, w·s, c]`.
pub fn nearest<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (n, h, w, c): (usize, usize, usize, usize),
    s: usize,
    out: &DeviceBuffer,
) {
    assert_eq!(input.len(), product(&[n, h, w, c], "nearest input"), "nearest input size");
    let (oh, ow) = (product(&[h, s], "nearest height"), product(&[w, s], "nearest width"));
    launch::<R, E>(client, input, (h, w, c), out, (n, oh, ow, c), s, Op::Nearest);
}

/// `[n, h, w, c]` → `[n, h + bottom, w + right, c]`, the new rows and columns reflecting the
/// frame's last ones (`bottom < h`, `right < w`).
pub fn reflect_pad<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (n, h, w, c): (usize, usize, usize, usize),
    (bottom, right): (usize, usize),
    out: &DeviceBuffer,
) {
    assert!(bottom < h.max(1) && right < w.max(1), "reflection needs padding below the side");
    assert!((bottom == 0 || h >= 2) && (right == 0 || w >= 2), "reflection needs sides of 2");
    assert_eq!(input.len(), product(&[n, h, w, c], "reflect pad input"), "reflect pad input size");
    launch::<R, E>(client, input, (h, w, c), out, (n, h + bottom, w + right, c), 1, Op::ReflectPad);
}

#[cube(launch_unchecked)]
fn copy_channels_kernel<F: Float>(
    input: &Array<F>,
    output: &mut Array<F>,
    channels: u32,
    in_stride: u32,
    in_offset: u32,
    out_stride: u32,
    out_offset: u32,
    pixels: u32,
) {
    let o = ABSOLUTE_POS;
    if o < (pixels * channels) as usize {
        let c = (o % channels as usize) as u32;
        let p = (o / channels as usize) as u32;
        output[(p * out_stride + out_offset + c) as usize] = input[(p * in_stride + in_offset + c) as usize];
    }
}

/// Copies channels `in_offset .. in_offset + channels` of each of `pixels` pixels (`in_stride`
/// channels apart) into channels `out_offset ..` of `out` (`out_stride` apart).
#[allow(clippy::too_many_arguments)]
pub fn copy_channels<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (in_stride, in_offset): (usize, usize),
    out: &DeviceBuffer,
    (out_stride, out_offset): (usize, usize),
    pixels: usize,
    channels: usize,
) {
    let fits = |offset: usize, stride: usize| offset.checked_add(channels).is_some_and(|end| end <= stride);
    assert!(fits(in_offset, in_stride) && fits(out_offset, out_stride), "copy channels: channels past the stride");
    assert!(
        input.len() >= product(&[pixels, in_stride], "copy channels input")
            && out.len() >= product(&[pixels, out_stride], "copy channels output"),
        "copy channels sizes"
    );
    if pixels * channels == 0 {
        return;
    }
    // SAFETY: reads and writes stay inside the checked pixel rows.
    unsafe {
        copy_channels_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, pixels * channels),
            cube_dim(),
            input.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            channels as u32,
            in_stride as u32,
            in_offset as u32,
            out_stride as u32,
            out_offset as u32,
            pixels as u32,
        );
    }
}

/// CPU references of the layouts, written from their definitions in channel-first form.
pub mod reference {
    /// Channel-last `[t][y][x][c]` accessor.
    fn at(data: &[f32], (h, w, c): (usize, usize, usize), t: usize, y: usize, x: usize, ch: usize) -> f32 {
        data[((t * h + y) * w + x) * c + ch]
    }

    pub fn depth_to_space_3d(
        x: &[f32],
        (frames, h, w, c): (usize, usize, usize, usize),
        (st, sh, sw): (usize, usize, usize),
        repeat: usize,
        drop_first: bool,
    ) -> Vec<f32> {
        let s = st * sh * sw;
        let cs = c / s;
        let out_c = cs * repeat;
        let (oh, ow) = (sh * h, sw * w);
        // U[c', st·t+a, sh·y+b, sw·x+d] = X[S·c' + a·sh·sw + b·sw + d, t, y, x], then tile and drop.
        let mut full = vec![0.0; st * frames * oh * ow * out_c];
        for t in 0..frames {
            for y in 0..h {
                for xx in 0..w {
                    for cc in 0..cs {
                        for a in 0..st {
                            for b in 0..sh {
                                for d in 0..sw {
                                    let v = at(x, (h, w, c), t, y, xx, s * cc + a * sh * sw + b * sw + d);
                                    for r in 0..repeat {
                                        let (ot, oy, ox) = (st * t + a, sh * y + b, sw * xx + d);
                                        full[((ot * oh + oy) * ow + ox) * out_c + r * cs + cc] = v;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let skip = if drop_first { oh * ow * out_c } else { 0 };
        full[skip.min(full.len())..].to_vec()
    }

    /// `out[ch, 2t + a] = in[a·c + ch, t]`, channel-first as WAN_VAE.md §3.5 states it.
    pub fn split_time_blocks(x: &[f32], (frames, h, w, c): (usize, usize, usize, usize)) -> Vec<f32> {
        let half = c / 2;
        let mut out = vec![0.0; x.len()];
        for t in 0..frames {
            for a in 0..2 {
                for ch in 0..half {
                    for y in 0..h {
                        for xx in 0..w {
                            out[(((2 * t + a) * h + y) * w + xx) * half + ch] = at(x, (h, w, c), t, y, xx, a * half + ch);
                        }
                    }
                }
            }
        }
        out
    }

    /// `out[o, st·t+a, sh·y+b, sw·x+d] = x[⌊(o·S + a·sh·sw + b·sw + d) / R⌋, t, y, x]`, then
    /// frame 0 dropped (WAN_VAE.md §3.6).
    pub fn repeat_depth_to_space_3d(
        x: &[f32],
        (frames, h, w, c): (usize, usize, usize, usize),
        (st, sh, sw): (usize, usize, usize),
        out_c: usize,
        drop_first: bool,
    ) -> Vec<f32> {
        let s = st * sh * sw;
        let r = out_c * s / c;
        let (oh, ow) = (sh * h, sw * w);
        let mut full = vec![0.0; st * frames * oh * ow * out_c];
        for o in 0..out_c {
            for t in 0..frames {
                for y in 0..h {
                    for xx in 0..w {
                        for a in 0..st {
                            for b in 0..sh {
                                for d in 0..sw {
                                    let src = (o * s + a * sh * sw + b * sw + d) / r;
                                    let (ot, oy, ox) = (st * t + a, sh * y + b, sw * xx + d);
                                    full[((ot * oh + oy) * ow + ox) * out_c + o] = at(x, (h, w, c), t, y, xx, src);
                                }
                            }
                        }
                    }
                }
            }
        }
        let skip = if drop_first { oh * ow * out_c } else { 0 };
        full[skip.min(full.len())..].to_vec()
    }

    pub fn unpatchify(
        y: &[f32],
        (frames, h, w, channels): (usize, usize, usize, usize),
        p: usize,
        to_unit: bool,
    ) -> Vec<f32> {
        let in_c = channels * p * p;
        let mut out = vec![0.0; frames * p * h * p * w * channels];
        for t in 0..frames {
            for i in 0..h {
                for j in 0..w {
                    for c in 0..channels {
                        for q in 0..p {
                            for r in 0..p {
                                let mut v = at(y, (h, w, in_c), t, i, j, p * p * c + p * r + q);
                                if to_unit {
                                    v = ((v + 1.0) * 0.5).clamp(0.0, 1.0);
                                }
                                out[((t * p * h + p * i + q) * p * w + p * j + r) * channels + c] = v;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub fn pixel_shuffle(x: &[f32], (n, h, w, c): (usize, usize, usize, usize), s: usize) -> Vec<f32> {
        let oc = c / (s * s);
        let mut out = vec![0.0; x.len()];
        for t in 0..n {
            for cc in 0..oc {
                for y in 0..h {
                    for xx in 0..w {
                        for i in 0..s {
                            for j in 0..s {
                                let v = at(x, (h, w, c), t, y, xx, cc * s * s + i * s + j);
                                out[((t * h * s + s * y + i) * w * s + s * xx + j) * oc + cc] = v;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub fn pixel_unshuffle(x: &[f32], (n, h, w, c): (usize, usize, usize, usize), u: usize) -> Vec<f32> {
        let (oh, ow, oc) = (h / u, w / u, c * u * u);
        let mut out = vec![0.0; x.len()];
        for t in 0..n {
            for cc in 0..c {
                for y in 0..oh {
                    for xx in 0..ow {
                        for i in 0..u {
                            for j in 0..u {
                                let v = at(x, (h, w, c), t, u * y + i, u * xx + j, cc);
                                out[((t * oh + y) * ow + xx) * oc + cc * u * u + i * u + j] = v;
                            }
                        }
                    }
                }
            }
        }
        out
    }

    pub fn reflect_pad(x: &[f32], (n, h, w, c): (usize, usize, usize, usize), (bottom, right): (usize, usize)) -> Vec<f32> {
        let reflect = |v: usize, len: usize| if v < len { v } else { 2 * len - 2 - v };
        let mut out = Vec::new();
        for t in 0..n {
            for y in 0..h + bottom {
                for xx in 0..w + right {
                    for cc in 0..c {
                        out.push(at(x, (h, w, c), t, reflect(y, h), reflect(xx, w), cc));
                    }
                }
            }
        }
        out
    }

    pub fn copy_channels(
        x: &[f32],
        (in_stride, in_offset): (usize, usize),
        out: &mut [f32],
        (out_stride, out_offset): (usize, usize),
        pixels: usize,
        channels: usize,
    ) {
        for p in 0..pixels {
            for c in 0..channels {
                out[p * out_stride + out_offset + c] = x[p * in_stride + in_offset + c];
            }
        }
    }

    pub fn nearest(x: &[f32], (n, h, w, c): (usize, usize, usize, usize), s: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() * s * s);
        for t in 0..n {
            for y in 0..h * s {
                for xx in 0..w * s {
                    for cc in 0..c {
                        out.push(at(x, (h, w, c), t, y / s, xx / s, cc));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, client, has_f16, poisoned, read_as_f32, rounded};

    fn check(got: Vec<f32>, want: Vec<f32>, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        // Pure data movement: exact.
        assert!(got == want, "{what}: differs from the reference");
    }

    #[test]
    fn layouts_match_references() {
        check_all::<f32>();
        if has_f16() {
            check_all::<half::f16>();
        }
    }

    fn check_all<E: Element>() {
        let client = client();
        let upload = |v: &[f32]| DeviceBuffer::from_f32_as::<_, E>(&client, v);
        let read = |b: &DeviceBuffer| read_as_f32::<E>(&client, b.handle().clone());
        let mut rng = Rng::new(61);
        for case in 0..6 {
            let (n, h, w) = (rng.range(1, 3), rng.range(1, 5), rng.range(1, 5));
            // Depth-to-space of every LTX stride, conv path (repeat 1) and residual path
            // (channels tiled), with and without the first-frame drop.
            let stride = [(2, 2, 2), (2, 1, 1), (1, 2, 2), (1, 1, 2), (2, 2, 1), (2, 2, 2)][case];
            let s = stride.0 * stride.1 * stride.2;
            let c = s * rng.range(1, 4);
            let x = rounded::<E>(rng.vec_f32(n * h * w * c, -1.0, 1.0));
            let input = upload(&x);
            // Only temporal strides drop a frame (then there are at least two).
            let temporal = stride.0 == 2;
            for (repeat, drop_first) in [(1, false), (1, temporal), (s, false), (s / 2, temporal)] {
                let out_frames = (stride.0 * n).saturating_sub(usize::from(drop_first));
                let out = poisoned::<E>(&client, out_frames * stride.1 * h * stride.2 * w * c / s * repeat);
                depth_to_space_3d::<_, E>(&client, &input, (n, h, w, c), stride, repeat, drop_first, &out);
                let want = reference::depth_to_space_3d(&x, (n, h, w, c), stride, repeat, drop_first);
                check(read(&out), want, &format!("case {case}: d2s {stride:?} r{repeat} {drop_first}"));
            }
            // Wan's time split, and the DupUp3D shortcut with Wan 2.2's strides and repeats
            // (R = 8, 2) and others (R = 1, 4, and channels repeated a fractional number of
            // times per output channel).
            let c2 = 2 * rng.range(1, 4);
            let x = rounded::<E>(rng.vec_f32(n * h * w * c2, -1.0, 1.0));
            let input = upload(&x);
            let out = poisoned::<E>(&client, x.len());
            split_time_blocks::<_, E>(&client, &input, (n, h, w, c2), &out);
            check(read(&out), reference::split_time_blocks(&x, (n, h, w, c2)), &format!("case {case}: time split"));
            let (stride, cin, out_c) = [
                ((2, 2, 2), 8, 8),
                ((1, 2, 2), 8, 4),
                ((2, 2, 2), 4, 16),
                ((1, 2, 2), 6, 12),
                ((2, 1, 1), 3, 6),
                ((2, 2, 2), 16, 4),
            ][case];
            let x = rounded::<E>(rng.vec_f32(n * h * w * cin, -1.0, 1.0));
            let input = upload(&x);
            for drop_first in [false, stride.0 == 2] {
                let s = stride.0 * stride.1 * stride.2;
                let out_frames = (stride.0 * n).saturating_sub(usize::from(drop_first));
                let out = poisoned::<E>(&client, out_frames * h * w * s / stride.0 * out_c);
                repeat_depth_to_space_3d::<_, E>(&client, &input, (n, h, w, cin), stride, out_c, drop_first, &out);
                let want = reference::repeat_depth_to_space_3d(&x, (n, h, w, cin), stride, out_c, drop_first);
                check(read(&out), want, &format!("case {case}: dup-up {stride:?} {cin}->{out_c} {drop_first}"));
            }
            // Unpatchify: LTX's patch 4 with RGB, and other patches and channel counts.
            let (p, oc) = [(4, 3), (2, 1), (1, 3), (4, 4), (3, 3), (4, 3)][case];
            let y = rounded::<E>(rng.vec_f32(n * h * w * oc * p * p, -1.5, 1.5));
            let input = upload(&y);
            for to_unit in [false, true] {
                let out = poisoned::<E>(&client, n * p * h * p * w * oc);
                unpatchify::<_, E>(&client, &input, (n, h, w, oc), p, to_unit, &out);
                let want = rounded::<E>(reference::unpatchify(&y, (n, h, w, oc), p, to_unit));
                check(read(&out), want, &format!("case {case}: unpatchify p{p} c{oc}"));
            }
            // Pixel shuffle, unshuffle, nearest.
            let s = [2, 3, 4][case % 3];
            let c = s * s * rng.range(1, 3);
            let x = rounded::<E>(rng.vec_f32(n * h * w * c, -1.0, 1.0));
            let input = upload(&x);
            let out = poisoned::<E>(&client, x.len());
            pixel_shuffle::<_, E>(&client, &input, (n, h, w, c), s, &out);
            let shuffled = read(&out);
            check(shuffled.clone(), reference::pixel_shuffle(&x, (n, h, w, c), s), "shuffle");
            let back = poisoned::<E>(&client, x.len());
            pixel_unshuffle::<_, E>(&client, &out, (n, h * s, w * s, c / (s * s)), s, &back);
            check(read(&back), x.clone(), "unshuffle undoes shuffle");
            let want = reference::pixel_unshuffle(&shuffled, (n, h * s, w * s, c / (s * s)), s);
            assert_eq!(want, x, "reference unshuffle undoes reference shuffle");
            let up = poisoned::<E>(&client, x.len() * s * s);
            nearest::<_, E>(&client, &input, (n, h, w, c), s, &up);
            check(read(&up), reference::nearest(&x, (n, h, w, c), s), "nearest");
            // Reflection padding and channel copies.
            let (hh, ww) = (h + 2, w + 2);
            let x = rounded::<E>(rng.vec_f32(n * hh * ww * c, -1.0, 1.0));
            let input = upload(&x);
            let (bottom, right) = (rng.range(0, hh - 1), rng.range(0, ww - 1));
            let out = poisoned::<E>(&client, n * (hh + bottom) * (ww + right) * c);
            reflect_pad::<_, E>(&client, &input, (n, hh, ww, c), (bottom, right), &out);
            check(read(&out), reference::reflect_pad(&x, (n, hh, ww, c), (bottom, right)), "reflect pad");
            let pixels = n * hh * ww;
            let (count, in_off) = (rng.range(1, c), 0);
            let in_off = in_off + rng.range(0, c - count);
            let out_stride = count + 3;
            let mut want = vec![0.5; pixels * out_stride];
            let dst = upload(&want);
            copy_channels::<_, E>(&client, &input, (c, in_off), &dst, (out_stride, 2), pixels, count);
            reference::copy_channels(&x, (c, in_off), &mut want, (out_stride, 2), pixels, count);
            check(read(&dst), want, "copy channels");
        }
    }
}
