//! Convolution over channel-last frames as a tiled implicit GEMM, with a temporal halo read
//! through a frame table and a fused epilogue.
//!
//! Input frames are `[frame, y, x, channel]`. One launch computes `out_frames` output frames of
//! a `kt × k × k` convolution (kt ∈ {1, 3}, k ∈ {1, 3}, stride 1): output frame `t` reads the
//! padded input frames `table[t .. t + kt]`, where a table entry below `head_frames` names a
//! frame of `head` (the previous chunk's cached frames) and any other entry names frame
//! `entry − head_frames` of `body`. So the halo and the first/last-frame padding of a temporal
//! convolution are read in place, never concatenated. Spatial padding is zeros, reflect or
//! replicate. Channels may be a slice of wider rows (`in_stride`, `out_stride`, `out_offset`),
//! so dense blocks write into slices of one buffer instead of concatenating.
//!
//! GEMM view: M = output pixels, N = output channels, K = taps × input channels. A cube
//! computes a 64 × 64 tile of the output with 16 × 16 threads of 4 × 4 each, staging 16-deep
//! slices of the input (gathered per tap) and of the weights in shared memory. Weights are
//! laid out `[tap][ci][co]` once, at load. Accumulation is f32 for every element type, in a
//! fixed order, so results never depend on how frames are chunked.
//!
//! Epilogue: `y = act(conv + bias)`, then `out = residual + scale · y` when a residual is given.

use std::any::TypeId;

use cubecl::prelude::*;

use crate::{DeviceBuffer, Element};

/// How out-of-range pixels read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Padding {
    Zeros,
    /// Row −1 reads row 1 (needs sides ≥ 2).
    Reflect,
    /// Row −1 reads row 0.
    Replicate,
}

/// The activation applied after the bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    None,
    /// `v ≥ 0 ? v : slope · v`.
    LeakyRelu(f32),
    /// `v ≥ 0 ? v : a[c] · v`, one slope per output channel.
    PRelu,
    /// `v · σ(v)`.
    Silu,
}

/// How the GEMM is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Shared-memory tiles (GPUs).
    Tiled,
    /// Register tiles from global memory, no barriers (CPUs running compute shaders, e.g.
    /// lavapipe, where a barrier costs a context switch per invocation).
    Direct,
}

/// Compile-time shape of a convolution kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvConfig {
    /// Temporal taps: 1 or 3.
    pub kt: u32,
    /// Spatial taps per side: 1 or 3.
    pub k: u32,
    pub padding: Padding,
    /// 0 none, 1 leaky ReLU, 2 PReLU, 3 SiLU.
    act: u32,
    pub residual: bool,
}

const BM: u32 = 64;
const BN: u32 = 64;
const BK: u32 = 16;
const TM: u32 = 4;
const TN: u32 = 4;
/// Threads per cube side (BM / TM = BN / TN = 16).
const THREADS: u32 = 16;
/// Pixels and output channels of one thread of the direct strategy.
const DM: u32 = 8;
const DN: u32 = 8;

/// The in-range coordinate that padded coordinate `v` of a side of length `len` reads, or
/// `len` where it reads zeros.
#[cube]
fn pad_index(v: i32, len: i32, #[comptime] padding: Padding) -> i32 {
    let mut out = v;
    if v < 0 || v >= len {
        if comptime!(padding == Padding::Zeros) {
            out = len;
        } else if comptime!(padding == Padding::Reflect) {
            out = select(v < 0, 0i32 - v, 2 * len - 2 - v);
        } else {
            out = select(v < 0, 0i32, len - 1);
        }
    }
    out
}

/// A staged pixel that reads zeros.
const ZERO_SOURCE: u32 = 0xFFFF_FFFF;
/// Marks a staged pixel of `body` (the rest of the word is its element offset).
const BODY_SOURCE: u32 = 0x8000_0000;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn conv_kernel<F: Float>(
    head: &Array<F>,
    body: &Array<F>,
    table: &Array<u32>,
    weights: &Array<F>,
    bias: &Array<F>,
    slopes: &Array<F>,
    residual: &Array<F>,
    output: &mut Array<F>,
    head_frames: u32,
    out_frames: u32,
    height: u32,
    width: u32,
    cin: u32,
    cout: u32,
    in_stride: u32,
    out_stride: u32,
    out_offset: u32,
    residual_stride: u32,
    residual_offset: u32,
    leaky_slope: f32,
    residual_scale: f32,
    #[comptime] kernel: ConvConfig,
) {
    let plane = height * width;
    let pixels = out_frames * plane;
    let tx = UNIT_POS_X;
    let ty = UNIT_POS_Y;
    let tid = ty * THREADS + tx;
    let m0 = CUBE_POS_X * BM;
    let n0 = CUBE_POS_Y * BN;
    let pad = comptime!(((kernel.k - 1) / 2) as i32);

    let mut a_tile = SharedMemory::<F>::new(comptime!((BK * BM) as usize));
    let mut b_tile = SharedMemory::<F>::new(comptime!((BK * BN) as usize));
    // Per tap: where each of the tile's pixels reads (see ZERO_SOURCE, BODY_SOURCE).
    let mut sources = SharedMemory::<u32>::new(comptime!(BM as usize));

    let mut acc = Array::<f32>::new(comptime!((TM * TN) as usize));
    #[unroll]
    for i in 0..TM * TN {
        acc[i as usize] = 0.0f32;
    }

    let taps = comptime!(kernel.kt * kernel.k * kernel.k);
    for tap in 0..taps {
        let dt = tap / comptime!(kernel.k * kernel.k);
        let dy = (tap / comptime!(kernel.k)) % comptime!(kernel.k);
        let dx = tap % comptime!(kernel.k);
        if tid < BM {
            let m = m0 + tid;
            let mut src = 0xFFFF_FFFFu32; // ZERO_SOURCE
            if m < pixels {
                let t = m / plane;
                let rest = m % plane;
                let y = pad_index((rest / width) as i32 + dy as i32 - pad, height as i32, kernel.padding);
                let x = pad_index((rest % width) as i32 + dx as i32 - pad, width as i32, kernel.padding);
                if y < height as i32 && x < width as i32 {
                    let frame = table[(t + dt) as usize];
                    let pixel = (y as u32 * width + x as u32) * in_stride;
                    src = select(
                        frame < head_frames,
                        frame * plane * in_stride + pixel,
                        BODY_SOURCE | ((frame - head_frames) * plane * in_stride + pixel),
                    );
                }
            }
            sources[tid as usize] = src;
        }
        sync_cube();
        let mut c0 = 0u32;
        while c0 < cin {
            // Stage A: BM pixels × BK channels; each thread loads 4.
            #[unroll]
            for l in 0..comptime!(BM * BK / (THREADS * THREADS)) {
                let e = tid + l * THREADS * THREADS;
                let row = e / BK;
                let kk = e % BK;
                let ci = c0 + kk;
                let src = sources[row as usize];
                let mut v = F::new(0.0);
                if ci < cin && src != ZERO_SOURCE {
                    if src < BODY_SOURCE {
                        v = head[(src + ci) as usize];
                    } else {
                        v = body[((src ^ BODY_SOURCE) + ci) as usize];
                    }
                }
                a_tile[(kk * BM + row) as usize] = v;
            }
            // Stage B: BK input channels × BN output channels of this tap.
            #[unroll]
            for l in 0..comptime!(BN * BK / (THREADS * THREADS)) {
                let e = tid + l * THREADS * THREADS;
                let kk = e / BN;
                let col = e % BN;
                let ci = c0 + kk;
                let co = n0 + col;
                let mut v = F::new(0.0);
                if ci < cin && co < cout {
                    v = weights[((tap * cin + ci) * cout + co) as usize];
                }
                b_tile[(kk * BN + col) as usize] = v;
            }
            sync_cube();
            #[unroll]
            for kk in 0..BK {
                let mut a = Array::<f32>::new(comptime!(TM as usize));
                let mut b = Array::<f32>::new(comptime!(TN as usize));
                #[unroll]
                for i in 0..TM {
                    a[i as usize] = f32::cast_from(a_tile[(kk * BM + ty * TM + i) as usize]);
                }
                #[unroll]
                for j in 0..TN {
                    b[j as usize] = f32::cast_from(b_tile[(kk * BN + tx * TN + j) as usize]);
                }
                #[unroll]
                for i in 0..TM {
                    #[unroll]
                    for j in 0..TN {
                        acc[(i * TN + j) as usize] += a[i as usize] * b[j as usize];
                    }
                }
            }
            sync_cube();
            c0 += BK;
        }
    }

    #[unroll]
    for i in 0..TM {
        let m = m0 + ty * TM + i;
        if m < pixels {
            #[unroll]
            for j in 0..TN {
                let co = n0 + tx * TN + j;
                if co < cout {
                    let v = epilogue(
                        acc[(i * TN + j) as usize], co, bias, slopes, residual,
                        residual_stride * m + residual_offset, leaky_slope, residual_scale, kernel,
                    );
                    output[(m * out_stride + out_offset + co) as usize] = F::cast_from(v);
                }
            }
        }
    }
}

/// Bias, activation and scaled residual of output channel `co`; the residual of this pixel
/// starts at `residual_at`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn epilogue<F: Float>(
    acc: f32,
    co: u32,
    bias: &Array<F>,
    slopes: &Array<F>,
    residual: &Array<F>,
    residual_at: u32,
    leaky_slope: f32,
    residual_scale: f32,
    #[comptime] kernel: ConvConfig,
) -> f32 {
    let mut v = acc + f32::cast_from(bias[co as usize]);
    if comptime!(kernel.act == 1) {
        v = select(v >= 0.0f32, v, v * leaky_slope);
    } else if comptime!(kernel.act == 2) {
        v = select(v >= 0.0f32, v, v * f32::cast_from(slopes[co as usize]));
    } else if comptime!(kernel.act == 3) {
        v = v / (1.0f32 + f32::exp(0.0f32 - v));
    }
    if comptime!(kernel.residual) {
        let r = f32::cast_from(residual[(residual_at + co) as usize]);
        v = r + residual_scale * v;
    }
    v
}

/// Register tiles read straight from global memory, no shared memory and no barriers: for
/// devices where a barrier costs more than the reuse it buys (CPUs running compute shaders,
/// where a barrier switches context per invocation). A thread computes DM pixels × DN output
/// channels; x runs over channel groups, y over pixel groups.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn conv_direct_kernel<F: Float>(
    head: &Array<F>,
    body: &Array<F>,
    table: &Array<u32>,
    weights: &Array<F>,
    bias: &Array<F>,
    slopes: &Array<F>,
    residual: &Array<F>,
    output: &mut Array<F>,
    head_frames: u32,
    out_frames: u32,
    height: u32,
    width: u32,
    cin: u32,
    cout: u32,
    in_stride: u32,
    out_stride: u32,
    out_offset: u32,
    residual_stride: u32,
    residual_offset: u32,
    leaky_slope: f32,
    residual_scale: f32,
    first_pixel: u32,
    #[comptime] kernel: ConvConfig,
) {
    let plane = height * width;
    let pixels = out_frames * plane;
    let n0 = ABSOLUTE_POS_X * DN;
    let m0 = first_pixel + ABSOLUTE_POS_Y * DM;
    if n0 < cout && m0 < pixels {
        let pad = comptime!(((kernel.k - 1) / 2) as i32);
        let mut acc = Array::<f32>::new(comptime!((DM * DN) as usize));
        #[unroll]
        for i in 0..DM * DN {
            acc[i as usize] = 0.0f32;
        }
        let mut src = Array::<u32>::new(comptime!(DM as usize));
        let taps = comptime!(kernel.kt * kernel.k * kernel.k);
        for tap in 0..taps {
            let dt = tap / comptime!(kernel.k * kernel.k);
            let dy = (tap / comptime!(kernel.k)) % comptime!(kernel.k);
            let dx = tap % comptime!(kernel.k);
            #[unroll]
            for i in 0..DM {
                let m = m0 + i;
                let mut s = 0xFFFF_FFFFu32; // ZERO_SOURCE
                if m < pixels {
                    let t = m / plane;
                    let rest = m % plane;
                    let y = pad_index((rest / width) as i32 + dy as i32 - pad, height as i32, kernel.padding);
                    let x = pad_index((rest % width) as i32 + dx as i32 - pad, width as i32, kernel.padding);
                    if y < height as i32 && x < width as i32 {
                        let frame = table[(t + dt) as usize];
                        let pixel = (y as u32 * width + x as u32) * in_stride;
                        s = select(
                            frame < head_frames,
                            frame * plane * in_stride + pixel,
                            BODY_SOURCE | ((frame - head_frames) * plane * in_stride + pixel),
                        );
                    }
                }
                src[i as usize] = s;
            }
            let wrow = tap * cin * cout;
            for ci in 0..cin {
                let mut b = Array::<f32>::new(comptime!(DN as usize));
                #[unroll]
                for j in 0..DN {
                    let co = n0 + j;
                    let mut v = 0.0f32;
                    if co < cout {
                        v = f32::cast_from(weights[(wrow + ci * cout + co) as usize]);
                    }
                    b[j as usize] = v;
                }
                #[unroll]
                for i in 0..DM {
                    let s = src[i as usize];
                    let mut a = 0.0f32;
                    if s != ZERO_SOURCE {
                        if s < BODY_SOURCE {
                            a = f32::cast_from(head[(s + ci) as usize]);
                        } else {
                            a = f32::cast_from(body[((s ^ BODY_SOURCE) + ci) as usize]);
                        }
                    }
                    #[unroll]
                    for j in 0..DN {
                        acc[(i * DN + j) as usize] += a * b[j as usize];
                    }
                }
            }
        }
        #[unroll]
        for i in 0..DM {
            let m = m0 + i;
            if m < pixels {
                #[unroll]
                for j in 0..DN {
                    let co = n0 + j;
                    if co < cout {
                        let v = epilogue(
                            acc[(i * DN + j) as usize], co, bias, slopes, residual,
                            residual_stride * m + residual_offset, leaky_slope, residual_scale,
                            kernel,
                        );
                        output[(m * out_stride + out_offset + co) as usize] = F::cast_from(v);
                    }
                }
            }
        }
    }
}

/// Weights in the kernel's layout and element type, with bias and PReLU slopes, split into
/// groups of output channels so each group's buffer fits the device's largest binding.
/// Cloning shares the device buffers.
#[derive(Clone)]
pub struct ConvWeights {
    /// The element type everything is stored in.
    elem: TypeId,
    pub kt: usize,
    pub k: usize,
    pub cin: usize,
    pub cout: usize,
    groups: Vec<WeightGroup>,
}

/// Output channels `first .. first + count`.
#[derive(Clone)]
struct WeightGroup {
    first: usize,
    count: usize,
    /// `[tap][ci][co]` over the group's channels.
    weights: DeviceBuffer,
    bias: DeviceBuffer,
    /// One per channel for PReLU; one zero otherwise.
    slopes: DeviceBuffer,
}

/// PyTorch's `[co][ci][kt][k][k]` (or `[co][ci][k][k]` with kt = 1) → `[tap][ci][co]` for the
/// output channels in `channels`.
pub fn gemm_layout(
    weights: &[f32],
    (cout, cin, kt, k): (usize, usize, usize, usize),
    channels: std::ops::Range<usize>,
) -> Vec<f32> {
    assert_eq!(weights.len(), cout * cin * kt * k * k, "weight count");
    let taps = kt * k * k;
    let n = channels.len();
    let mut out = vec![0.0; taps * cin * n];
    for (j, co) in channels.enumerate() {
        for ci in 0..cin {
            for tap in 0..taps {
                out[(tap * cin + ci) * n + j] = weights[(co * cin + ci) * taps + tap];
            }
        }
    }
    out
}

impl ConvWeights {
    /// Uploads f32 weights given in PyTorch's layout, converted to `E`.
    pub fn upload<R: Runtime, E: Element>(
        client: &ComputeClient<R>,
        torch_weights: &[f32],
        bias: Option<&[f32]>,
        slopes: Option<&[f32]>,
        shape: (usize, usize, usize, usize),
    ) -> Self {
        let limit = client.properties().memory.max_page_size as usize;
        Self::upload_within::<R, E>(client, torch_weights, bias, slopes, shape, limit)
    }

    /// As [`upload`](Self::upload), with weight buffers of at most `limit` bytes.
    pub fn upload_within<R: Runtime, E: Element>(
        client: &ComputeClient<R>,
        torch_weights: &[f32],
        bias: Option<&[f32]>,
        slopes: Option<&[f32]>,
        (cout, cin, kt, k): (usize, usize, usize, usize),
        limit: usize,
    ) -> Self {
        assert!(matches!(kt, 1 | 3) && matches!(k, 1 | 3), "kernels of 1 or 3 taps");
        let zeros = vec![0.0f32; cout];
        let bias = bias.unwrap_or(&zeros);
        assert_eq!(bias.len(), cout, "bias length");
        if let Some(slopes) = slopes {
            assert_eq!(slopes.len(), cout, "one PReLU slope per output channel");
        }
        let per_channel = kt * k * k * cin * size_of::<E>();
        let mut per_group = (limit / per_channel).min(cout);
        assert!(per_group > 0, "one output channel's weights exceed the device's largest buffer");
        if per_group < cout && per_group >= BN as usize {
            per_group -= per_group % BN as usize;
        }
        let upload = |v: &[f32]| DeviceBuffer::from_f32_as::<R, E>(client, v);
        let groups = (0..cout)
            .step_by(per_group)
            .map(|first| {
                let range = first..(first + per_group).min(cout);
                WeightGroup {
                    first,
                    count: range.len(),
                    weights: upload(&gemm_layout(torch_weights, (cout, cin, kt, k), range.clone())),
                    bias: upload(&bias[range.clone()]),
                    slopes: upload(slopes.map_or(&zeros[..1], |s| &s[range])),
                }
            })
            .collect();
        Self { elem: TypeId::of::<E>(), kt, k, cin, cout, groups }
    }

    /// Whether PReLU slopes were given.
    fn has_slopes(&self) -> bool {
        self.groups.iter().all(|g| g.slopes.len == g.count)
    }
}

/// Where the input frames come from: `head` then `body`, read through `table`.
pub struct ConvInput<'a> {
    pub head: Option<&'a DeviceBuffer>,
    pub head_frames: usize,
    pub body: &'a DeviceBuffer,
    /// Padded frame sequence: entry < `head_frames` is a `head` frame, else a `body` frame.
    pub table: &'a [u32],
    pub height: usize,
    pub width: usize,
    /// Channels per pixel in memory (≥ `cin`; the first `cin` are read).
    pub stride: usize,
}

/// Where the output goes and what is fused into it.
pub struct ConvOutput<'a> {
    pub out: &'a DeviceBuffer,
    /// Channels per pixel in memory; the output fills `offset .. offset + cout`.
    pub stride: usize,
    pub offset: usize,
    pub activation: Activation,
    /// `out = residual + scale · y`.
    pub residual: Option<Residual<'a>>,
}

/// A residual added in the epilogue: channel `co` of pixel `m` reads
/// `buffer[m · stride + offset + co]`.
#[derive(Clone, Copy)]
pub struct Residual<'a> {
    pub buffer: &'a DeviceBuffer,
    pub stride: usize,
    pub offset: usize,
    pub scale: f32,
}

impl<'a> Residual<'a> {
    /// A dense residual of `channels` channels per pixel.
    pub fn dense(buffer: &'a DeviceBuffer, channels: usize, scale: f32) -> Self {
        Self { buffer, stride: channels, offset: 0, scale }
    }
}

/// Runs the convolution: `table.len() − kt + 1` output frames. Every buffer holds `E`.
pub fn conv<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    weights: &ConvWeights,
    input: &ConvInput,
    output: &ConvOutput,
    padding: Padding,
    strategy: Strategy,
) {
    assert!(weights.elem == TypeId::of::<E>(), "weights uploaded as another element type");
    let (h, w) = (input.height, input.width);
    let out_frames = input.table.len() + 1 - weights.kt;
    assert!(input.table.len() >= weights.kt, "fewer padded frames than taps");
    assert!(input.stride >= weights.cin && output.stride >= output.offset + weights.cout);
    let body_frames = input.body.len / (h * w * input.stride).max(1);
    for &f in input.table {
        let f = f as usize;
        assert!(
            f < input.head_frames || f - input.head_frames < body_frames,
            "frame table entry {f} out of range"
        );
    }
    if let Some(head) = input.head {
        assert!(head.len >= input.head_frames * h * w * input.stride, "head size");
    }
    assert!(output.out.len >= out_frames * h * w * output.stride, "output size");
    if padding == Padding::Reflect && weights.k == 3 {
        assert!(h >= 2 && w >= 2, "reflect padding needs sides of at least 2");
    }
    let pixels = out_frames * h * w;
    let largest = (input.body.len).max(input.head.map_or(0, |h| h.len)).max(output.out.len);
    assert!(largest < 0x8000_0000, "buffers over 2^31 elements");
    if pixels == 0 {
        return;
    }
    let (act, slope) = match output.activation {
        Activation::None => (0, 0.0),
        Activation::LeakyRelu(s) => (1, s),
        Activation::PRelu => {
            assert!(weights.has_slopes(), "PReLU needs one slope per channel");
            (2, 0.0)
        }
        Activation::Silu => (3, 0.0),
    };
    let (residual, residual_stride, residual_offset, scale) = match output.residual {
        Some(r) => {
            assert!(r.stride >= r.offset + weights.cout, "residual channels");
            assert!(r.buffer.len >= pixels * r.stride, "residual size");
            (Some(r.buffer), r.stride, r.offset, r.scale)
        }
        None => (None, 0, 0, 0.0),
    };
    let kernel = ConvConfig {
        kt: weights.kt as u32,
        k: weights.k as u32,
        padding,
        act,
        residual: output.residual.is_some(),
    };
    let table = DeviceBuffer::from_u32(client, input.table);
    let head = input.head.unwrap_or(input.body);
    for group in &weights.groups {
        let residual = residual.unwrap_or(&group.bias);
        macro_rules! launch {
            ($kernel:ident, $count:expr, $dim:expr $(, $extra:expr)*) => {
                // SAFETY: every read is bounds-checked against the sizes asserted above
                // (frame table entries, strides, head/body/residual lengths); writes stay
                // below `pixels × stride`, inside this group's channels.
                unsafe {
                    $kernel::launch_unchecked::<E, R>(
                        client,
                        $count,
                        $dim,
                        head.arg(),
                        input.body.arg(),
                        table.arg(),
                        group.weights.arg(),
                        group.bias.arg(),
                        group.slopes.arg(),
                        residual.arg(),
                        output.out.arg(),
                        input.head_frames as u32,
                        out_frames as u32,
                        h as u32,
                        w as u32,
                        weights.cin as u32,
                        group.count as u32,
                        input.stride as u32,
                        output.stride as u32,
                        (output.offset + group.first) as u32,
                        residual_stride as u32,
                        (residual_offset + group.first) as u32,
                        slope,
                        scale,
                        $($extra,)*
                        kernel,
                    )
                }
            };
        }
        match strategy {
            Strategy::Tiled => launch!(
                conv_kernel,
                CubeCount::Static((pixels as u32).div_ceil(BM), (group.count as u32).div_ceil(BN), 1),
                CubeDim::new_2d(THREADS, THREADS)
            ),
            Strategy::Direct => {
                // Pixel groups beyond the grid's y limit go to further launches.
                let max_y = client.properties().hardware.max_cube_count.1 as usize;
                let per_launch = max_y * (DM * 8) as usize;
                for first in (0..pixels).step_by(per_launch) {
                    let groups = ((pixels - first).min(per_launch) as u32).div_ceil(DM * 8);
                    let count = CubeCount::Static((group.count as u32).div_ceil(DN * 8), groups, 1);
                    launch!(conv_direct_kernel, count, CubeDim::new_2d(8, 8), first as u32);
                }
            }
        }
    }
}

/// CPU reference of [`conv`] in f64 over an explicit padded frame sequence `frames` (each
/// `[y][x][stride]`, the first `cin` channels read), PyTorch-layout weights. Returns
/// `[out_frame][y][x][cout]` before the residual, and applies the residual when given
/// (`[pixel][cout]`).
#[allow(clippy::too_many_arguments)]
pub fn conv_reference(
    frames: &[&[f32]],
    (height, width, stride): (usize, usize, usize),
    torch_weights: &[f32],
    bias: &[f32],
    (cout, cin, kt, k): (usize, usize, usize, usize),
    padding: Padding,
    activation: Activation,
    slopes: &[f32],
    residual: Option<(&[f32], f32)>,
) -> Vec<f64> {
    let pad = (k as i64 - 1) / 2;
    let taps = kt * k * k;
    let fetch = |frame: &[f32], y: i64, x: i64, ci: usize| -> f64 {
        let side = |v: i64, len: i64| -> Option<i64> {
            if (0..len).contains(&v) {
                return Some(v);
            }
            match padding {
                Padding::Zeros => None,
                Padding::Reflect => Some(if v < 0 { -v } else { 2 * len - 2 - v }),
                Padding::Replicate => Some(v.clamp(0, len - 1)),
            }
        };
        match (side(y, height as i64), side(x, width as i64)) {
            (Some(y), Some(x)) => f64::from(frame[((y as usize) * width + x as usize) * stride + ci]),
            _ => 0.0,
        }
    };
    let out_frames = frames.len() + 1 - kt;
    let mut out = Vec::with_capacity(out_frames * height * width * cout);
    for t in 0..out_frames {
        for y in 0..height as i64 {
            for x in 0..width as i64 {
                for co in 0..cout {
                    let mut acc = f64::from(bias[co]);
                    for ci in 0..cin {
                        for a in 0..kt {
                            for b in 0..k {
                                for d in 0..k {
                                    let wgt = torch_weights[(co * cin + ci) * taps + (a * k + b) * k + d];
                                    let v = fetch(frames[t + a], y + b as i64 - pad, x + d as i64 - pad, ci);
                                    acc += f64::from(wgt) * v;
                                }
                            }
                        }
                    }
                    let acc = match activation {
                        Activation::None => acc,
                        Activation::LeakyRelu(s) => if acc >= 0.0 { acc } else { acc * f64::from(s) },
                        Activation::PRelu => if acc >= 0.0 { acc } else { acc * f64::from(slopes[co]) },
                        Activation::Silu => acc / (1.0 + (-acc).exp()),
                    };
                    out.push(acc);
                }
            }
        }
    }
    if let Some((r, scale)) = residual {
        for (o, r) in out.iter_mut().zip(r) {
            *o = f64::from(*r) + f64::from(scale) * *o;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, has_f16, poisoned, read_as_f32, rounded};

    #[test]
    fn matches_reference_on_random_shapes() {
        check::<f32>(1e-5, 20);
    }

    #[test]
    fn weight_groups_give_the_same_output() {
        let client = client();
        let mut rng = Rng::new(33);
        let (cout, cin, h, w) = (70, 5, 4, 3);
        let torch_weights = rng.vec_f32(cout * cin * 27, -0.5, 0.5);
        let bias = rng.vec_f32(cout, -0.5, 0.5);
        let slopes = rng.vec_f32(cout, 0.0, 0.5);
        let x = DeviceBuffer::from_f32(&client, &rng.vec_f32(3 * h * w * cin, -1.0, 1.0));
        let residual = DeviceBuffer::from_f32(&client, &rng.vec_f32(h * w * cout, -1.0, 1.0));
        let run = |limit: usize| {
            let weights = ConvWeights::upload_within::<_, f32>(
                &client,
                &torch_weights,
                Some(&bias),
                Some(&slopes),
                (cout, cin, 3, 3),
                limit,
            );
            let out = poisoned::<f32>(&client, h * w * (cout + 2));
            let input = ConvInput {
                head: None,
                head_frames: 0,
                body: &x,
                table: &[0, 1, 2],
                height: h,
                width: w,
                stride: cin,
            };
            let output = ConvOutput {
                out: &out,
                stride: cout + 2,
                offset: 1,
                activation: Activation::PRelu,
                residual: Some(Residual::dense(&residual, cout, 0.5)),
            };
            conv::<_, f32>(&client, &weights, &input, &output, Padding::Replicate, Strategy::Direct);
            (weights.groups.len(), read_as_f32::<f32>(&client, out.handle))
        };
        let (one, whole) = run(usize::MAX);
        let (many, grouped) = run(27 * cin * 4 * 9);
        assert_eq!((one, many), (1, 8));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&whole), bits(&grouped));
    }

    #[test]
    fn matches_reference_in_f16() {
        if has_f16() {
            check::<half::f16>(1e-2, 8);
        }
    }

    #[test]
    #[ignore = "bf16 needs a device that has it (CUDA)"]
    fn matches_reference_in_bf16() {
        check::<half::bf16>(1e-2, 8);
    }

    fn check<E: Element>(tolerance: f64, cases: usize) {
        let client = client();
        let mut rng = Rng::new(31);
        for case in 0..cases {
            let kt = [1, 3][case % 2];
            let k = [1, 3, 3][case % 3];
            let padding = [Padding::Zeros, Padding::Reflect, Padding::Replicate][case % 3];
            let activation = [
                Activation::None,
                Activation::LeakyRelu(0.2),
                Activation::PRelu,
                Activation::Silu,
            ][case % 4];
            let (h, w) = (rng.range(2, 9), rng.range(2, 9));
            let cin = rng.range(1, 40);
            let cout = rng.range(1, 70);
            let in_stride = cin + rng.range(0, 3);
            let (head_frames, body_frames) = (rng.range(0, 2), rng.range(1, 3));
            let out_frames = rng.range(1, 3);
            // A table mixing head and body frames, with repeats (first/last-frame padding).
            let table: Vec<u32> = (0..out_frames + kt - 1)
                .map(|_| rng.range(0, head_frames + body_frames - 1) as u32)
                .collect();
            let frame_len = h * w * in_stride;
            let head = rounded::<E>(rng.vec_f32(head_frames.max(1) * frame_len, -1.0, 1.0));
            let body = rounded::<E>(rng.vec_f32(body_frames * frame_len, -1.0, 1.0));
            let torch_weights = rounded::<E>(rng.vec_f32(cout * cin * kt * k * k, -0.5, 0.5));
            let bias = rounded::<E>(rng.vec_f32(cout, -0.5, 0.5));
            let slopes = rounded::<E>(rng.vec_f32(cout, 0.0, 0.5));
            let out_stride = cout + rng.range(0, 4);
            let out_offset = out_stride - cout - rng.range(0, out_stride - cout);
            let residual = (case % 5 == 0)
                .then(|| rounded::<E>(rng.vec_f32(out_frames * h * w * cout, -1.0, 1.0)));

            let weights = ConvWeights::upload::<_, E>(
                &client,
                &torch_weights,
                Some(&bias),
                matches!(activation, Activation::PRelu).then_some(&slopes[..]),
                (cout, cin, kt, k),
            );
            let head_buf = DeviceBuffer::from_f32_as::<_, E>(&client, &head);
            let body_buf = DeviceBuffer::from_f32_as::<_, E>(&client, &body);
            let residual_buf = residual.as_ref().map(|r| DeviceBuffer::from_f32_as::<_, E>(&client, r));
            let out = poisoned::<E>(&client, out_frames * h * w * out_stride);
            let input = ConvInput {
                head: (head_frames > 0).then_some(&head_buf),
                head_frames,
                body: &body_buf,
                table: &table,
                height: h,
                width: w,
                stride: in_stride,
            };
            let output = ConvOutput {
                out: &out,
                stride: out_stride,
                offset: out_offset,
                activation,
                residual: residual_buf.as_ref().map(|r| Residual::dense(r, cout, 0.2)),
            };
            let strategy = [Strategy::Tiled, Strategy::Direct][case % 2 ^ (case / 2) % 2];
            conv::<_, E>(&client, &weights, &input, &output, padding, strategy);
            let got = read_as_f32::<E>(&client, out.handle);
            let frames: Vec<&[f32]> = table
                .iter()
                .map(|&f| {
                    let f = f as usize;
                    if f < head_frames {
                        &head[f * frame_len..(f + 1) * frame_len]
                    } else {
                        &body[(f - head_frames) * frame_len..(f - head_frames + 1) * frame_len]
                    }
                })
                .collect();
            let want = conv_reference(
                &frames,
                (h, w, in_stride),
                &torch_weights,
                &bias,
                (cout, cin, kt, k),
                padding,
                activation,
                &slopes,
                residual.as_deref().map(|r| (r, 0.2)),
            );
            let got_slice: Vec<f32> = got
                .chunks(out_stride)
                .flat_map(|px| px[out_offset..out_offset + cout].to_vec())
                .collect();
            let what = format!(
                "case {case}: {strategy:?} {kt}x{k}x{k} {padding:?} {activation:?} {h}x{w} \
                 {cin}->{cout} head {head_frames} body {body_frames} table {table:?}"
            );
            assert_close(&got_slice, &want, tolerance, &what);
            // Channels outside the slice stay untouched (still poisoned).
            let outside = got.chunks(out_stride).all(|px| {
                px[..out_offset].iter().chain(&px[out_offset + cout..]).all(|v| v.is_nan())
            });
            assert!(outside, "{what}: wrote outside its channel slice");
        }
    }
}
