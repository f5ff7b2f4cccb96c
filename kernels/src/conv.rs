//! Convolution over channel-last frames as a tiled implicit GEMM, with a temporal halo read
//! in place and a fused epilogue.
//!
//! Input frames are `[frame, y, x, channel]`. One launch computes `out_frames` output frames of
//! a `kt × k × k` convolution (kt ∈ {1, 3}, k ∈ {1, 3}, spatial stride 1 or 2): output frame `t` reads the
//! padded input frames `t .. t + kt` of a [`Sequence`]: the frames of `head` (the previous
//! chunk's cached frames) then those of `body`, the first repeated `lead` times before and the
//! last `trail` times after. So the halo and the first/last-frame padding of a temporal
//! convolution are read in place, never concatenated, and a launch uploads nothing. Spatial padding is zeros, reflect or
//! replicate. Channels may be a slice of wider rows (`in_stride`, `out_stride`, `out_offset`),
//! so dense blocks write into slices of one buffer instead of concatenating.
//!
//! GEMM view: M = output pixels, N = output channels, K = taps × input channels. A cube
//! computes a 64 × 64 tile of the output with 16 × 16 threads of 4 × 4 each, staging 16-deep
//! slices of the input (gathered per tap) and of the weights in shared memory. Weights are
//! laid out `[tap][ci][co]` once, at load. Global memory is read and written in vectors of up
//! to 4 elements along the channels (16 bytes of f32), the widest that divides the channel
//! counts, strides and offsets, so every vector is aligned and wholly in or out of range.
//! Accumulation is f32 for every element type, in a fixed order (the same for every vector
//! width), so results never depend on how frames are chunked.
//!
//! Epilogue: `y = act(conv + bias)`, then `out = residual + scale · y` when a residual is given.

use std::any::TypeId;

use cubecl::prelude::*;

use crate::{DeviceBuffer, Element};
use crate::launch::product;

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
    /// Spatial stride: 1 or 2.
    pub step: u32,
    pub padding: Padding,
    /// 0 none, 1 leaky ReLU, 2 PReLU, 3 SiLU.
    act: u32,
    pub residual: bool,
    /// The residual joins before the activation: `act(r + s·(conv + bias))`.
    pub residual_first: bool,
    /// Elements per load of the input (along input channels) and per load of the weights,
    /// residual and per store of the output (along output channels): 1, 2 or 4.
    ni: u32,
    no: u32,
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

/// The runtime scalars of a launch: sizes, strides and offsets in elements.
#[derive(CubeType, CubeLaunch, Clone, Copy)]
struct ConvShape {
    head_frames: u32,
    /// Head and body frames together.
    frames: u32,
    /// Frames before them: copies of the first, or zeros when `zero_lead` is 1.
    lead: u32,
    zero_lead: u32,
    out_frames: u32,
    /// Input frame size.
    height: u32,
    width: u32,
    /// Output frame size (the input's over the stride, rounded up).
    out_height: u32,
    out_width: u32,
    cin: u32,
    /// Output channels of this launch (one weight group).
    cout: u32,
    in_stride: u32,
    out_stride: u32,
    out_offset: u32,
    residual_stride: u32,
    residual_offset: u32,
    leaky_slope: f32,
    residual_scale: f32,
    /// The first output pixel of this launch (large grids are split into several).
    first_pixel: u32,
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn conv_kernel<F: Float, NI: Size, NO: Size>(
    head: &Array<Vector<F, NI>>,
    body: &Array<Vector<F, NI>>,
    weights: &Array<Vector<F, NO>>,
    bias: &Array<F>,
    slopes: &Array<F>,
    residual: &Array<Vector<F, NO>>,
    output: &mut Array<Vector<F, NO>>,
    shape: ConvShape,
    #[comptime] kernel: ConvConfig,
) {
    let cin = shape.cin;
    let cout = shape.cout;
    let pixels = shape.out_frames * shape.out_height * shape.out_width;
    let tx = UNIT_POS_X;
    let ty = UNIT_POS_Y;
    let tid = ty * THREADS + tx;
    let m0 = shape.first_pixel + CUBE_POS_X * BM;
    let n0 = CUBE_POS_Y * BN;

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
        if tid < BM {
            sources[tid as usize] = source(m0 + tid, tap, &shape, kernel);
        }
        sync_cube();
        let mut c0 = 0u32;
        while c0 < cin {
            // Stage A: BM pixels × BK channels, NI channels per load.
            #[unroll]
            for l in 0..comptime!(BM * BK / (THREADS * THREADS * kernel.ni)) {
                let e = tid + l * THREADS * THREADS;
                let row = e / comptime!(BK / kernel.ni);
                let kk = (e % comptime!(BK / kernel.ni)) * comptime!(kernel.ni);
                let src = sources[row as usize];
                let v = load_pixel(head, body, src, c0 + kk, cin, kernel);
                #[unroll]
                for k in 0..comptime!(kernel.ni) {
                    a_tile[((kk + k) * BM + row) as usize] = v[k as usize];
                }
            }
            // Stage B: BK input channels × BN output channels of this tap, NO per load.
            #[unroll]
            for l in 0..comptime!(BN * BK / (THREADS * THREADS * kernel.no)) {
                let e = tid + l * THREADS * THREADS;
                let kk = e / comptime!(BN / kernel.no);
                let col = (e % comptime!(BN / kernel.no)) * comptime!(kernel.no);
                let ci = c0 + kk;
                let co = n0 + col;
                let mut v = Vector::<F, NO>::new(F::new(0.0));
                if ci < cin && co < cout {
                    v = weights[(((tap * cin + ci) * cout + co) / comptime!(kernel.no)) as usize];
                }
                #[unroll]
                for k in 0..comptime!(kernel.no) {
                    b_tile[(kk * BN + col + k) as usize] = v[k as usize];
                }
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
        store_row(
            &acc, i * TN, TN, m0 + ty * TM + i, n0 + tx * TN, pixels, bias, slopes, residual, output,
            &shape, kernel,
        );
    }
}

/// Where output pixel `m` reads for `tap`: an offset into `head`, or into `body` marked with
/// BODY_SOURCE, in elements of the input; ZERO_SOURCE in the padding or past the pixels.
#[cube]
fn source(m: u32, tap: u32, shape: &ConvShape, #[comptime] kernel: ConvConfig) -> u32 {
    let (height, width, in_stride) = (shape.height, shape.width, shape.in_stride);
    let plane = height * width;
    let out_plane = shape.out_height * shape.out_width;
    let dt = tap / comptime!(kernel.k * kernel.k);
    let dy = (tap / comptime!(kernel.k)) % comptime!(kernel.k);
    let dx = tap % comptime!(kernel.k);
    let pad = comptime!(((kernel.k - 1) / 2) as i32);
    let step = comptime!(kernel.step as i32);
    let mut src = 0xFFFF_FFFFu32; // ZERO_SOURCE
    if m < shape.out_frames * out_plane {
        let t = m / out_plane;
        let rest = m % out_plane;
        let oy = (rest / shape.out_width) as i32;
        let ox = (rest % shape.out_width) as i32;
        let y = pad_index(oy * step + dy as i32 - pad, height as i32, kernel.padding);
        let x = pad_index(ox * step + dx as i32 - pad, width as i32, kernel.padding);
        if y < height as i32 && x < width as i32 {
            // The padded position's frame: the first or last one in the lead or trail.
            let p = (t + dt) as i32 - shape.lead as i32;
            let last = shape.frames as i32 - 1;
            let frame = select(p < 0, 0i32, select(p > last, last, p)) as u32;
            let pixel = (y as u32 * width + x as u32) * in_stride;
            if p >= 0 || shape.zero_lead == 0 {
                src = select(
                    frame < shape.head_frames,
                    frame * plane * in_stride + pixel,
                    BODY_SOURCE | ((frame - shape.head_frames) * plane * in_stride + pixel),
                );
            }
        }
    }
    src
}

/// Input channels `ci .. ci + NI` of the pixel at `src` (see [`source`]); zeros in the
/// padding and past `cin` (which NI divides, so a load is wholly in or out).
#[cube]
fn load_pixel<F: Float, NI: Size>(
    head: &Array<Vector<F, NI>>,
    body: &Array<Vector<F, NI>>,
    src: u32,
    ci: u32,
    cin: u32,
    #[comptime] kernel: ConvConfig,
) -> Vector<F, NI> {
    let mut v = Vector::<F, NI>::new(F::new(0.0));
    if ci < cin && src != ZERO_SOURCE {
        if src < BODY_SOURCE {
            v = head[((src + ci) / comptime!(kernel.ni)) as usize];
        } else {
            v = body[(((src ^ BODY_SOURCE) + ci) / comptime!(kernel.ni)) as usize];
        }
    }
    v
}

/// Bias, activation, residual and store of `count` accumulators `acc[first ..]`: output
/// pixel `m`, channels `co0 ..`, NO channels per store (NO divides `cout`, the strides and
/// the offsets, so a store is wholly in or out).
#[cube]
#[allow(clippy::too_many_arguments)]
fn store_row<F: Float, NO: Size>(
    acc: &Array<f32>,
    first: u32,
    #[comptime] count: u32,
    m: u32,
    co0: u32,
    pixels: u32,
    bias: &Array<F>,
    slopes: &Array<F>,
    residual: &Array<Vector<F, NO>>,
    output: &mut Array<Vector<F, NO>>,
    shape: &ConvShape,
    #[comptime] kernel: ConvConfig,
) {
    if m < pixels {
        #[unroll]
        for g in 0..comptime!(count / kernel.no) {
            let j0 = g * comptime!(kernel.no);
            let co = co0 + j0;
            if co < shape.cout {
                let mut r = Vector::<F, NO>::new(F::new(0.0));
                if comptime!(kernel.residual) {
                    let at = shape.residual_stride * m + shape.residual_offset + co;
                    r = residual[(at / comptime!(kernel.no)) as usize];
                }
                let mut out = Vector::<F, NO>::empty();
                #[unroll]
                for k in 0..comptime!(kernel.no) {
                    let v = epilogue(
                        acc[(first + j0 + k) as usize], co + k, bias, slopes, f32::cast_from(r[k as usize]),
                        shape, kernel,
                    );
                    out[k as usize] = F::cast_from(v);
                }
                output[((m * shape.out_stride + shape.out_offset + co) / comptime!(kernel.no)) as usize] = out;
            }
        }
    }
}

/// Bias, activation and scaled residual `r` of output channel `co`.
#[cube]
fn epilogue<F: Float>(
    acc: f32,
    co: u32,
    bias: &Array<F>,
    slopes: &Array<F>,
    r: f32,
    shape: &ConvShape,
    #[comptime] kernel: ConvConfig,
) -> f32 {
    let mut v = acc + f32::cast_from(bias[co as usize]);
    if comptime!(kernel.residual && kernel.residual_first) {
        v = r + shape.residual_scale * v;
    }
    if comptime!(kernel.act == 1) {
        v = select(v >= 0.0f32, v, v * shape.leaky_slope);
    } else if comptime!(kernel.act == 2) {
        v = select(v >= 0.0f32, v, v * f32::cast_from(slopes[co as usize]));
    } else if comptime!(kernel.act == 3) {
        v = v / (1.0f32 + f32::exp(0.0f32 - v));
    }
    if comptime!(kernel.residual && !kernel.residual_first) {
        v = r + shape.residual_scale * v;
    }
    v
}

/// Register tiles read straight from global memory, no shared memory and no barriers: for
/// devices where a barrier costs more than the reuse it buys (CPUs running compute shaders,
/// where a barrier switches context per invocation). A thread computes DM pixels × DN output
/// channels; x runs over channel groups, y over pixel groups.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn conv_direct_kernel<F: Float, NI: Size, NO: Size>(
    head: &Array<Vector<F, NI>>,
    body: &Array<Vector<F, NI>>,
    weights: &Array<Vector<F, NO>>,
    bias: &Array<F>,
    slopes: &Array<F>,
    residual: &Array<Vector<F, NO>>,
    output: &mut Array<Vector<F, NO>>,
    shape: ConvShape,
    #[comptime] kernel: ConvConfig,
) {
    let cin = shape.cin;
    let cout = shape.cout;
    let pixels = shape.out_frames * shape.out_height * shape.out_width;
    let n0 = ABSOLUTE_POS_X * DN;
    let m0 = shape.first_pixel + ABSOLUTE_POS_Y * DM;
    if n0 < cout && m0 < pixels {
        let mut acc = Array::<f32>::new(comptime!((DM * DN) as usize));
        #[unroll]
        for i in 0..DM * DN {
            acc[i as usize] = 0.0f32;
        }
        let mut src = Array::<u32>::new(comptime!(DM as usize));
        let taps = comptime!(kernel.kt * kernel.k * kernel.k);
        for tap in 0..taps {
            #[unroll]
            for i in 0..DM {
                src[i as usize] = source(m0 + i, tap, &shape, kernel);
            }
            let wrow = tap * cin * cout;
            let mut ci = 0u32;
            while ci < cin {
                // NI input channels × DN output channels of weights.
                let mut b = Array::<f32>::new(comptime!((kernel.ni * DN) as usize));
                #[unroll]
                for kk in 0..comptime!(kernel.ni) {
                    #[unroll]
                    for g in 0..comptime!(DN / kernel.no) {
                        let co = n0 + g * comptime!(kernel.no);
                        let mut v = Vector::<F, NO>::new(F::new(0.0));
                        if co < cout {
                            v = weights[((wrow + (ci + kk) * cout + co) / comptime!(kernel.no)) as usize];
                        }
                        #[unroll]
                        for k in 0..comptime!(kernel.no) {
                            b[(kk * DN + g * comptime!(kernel.no) + k) as usize] = f32::cast_from(v[k as usize]);
                        }
                    }
                }
                #[unroll]
                for i in 0..DM {
                    let a = load_pixel(head, body, src[i as usize], ci, cin, kernel);
                    #[unroll]
                    for kk in 0..comptime!(kernel.ni) {
                        let av = f32::cast_from(a[kk as usize]);
                        #[unroll]
                        for j in 0..DN {
                            acc[(i * DN + j) as usize] += av * b[(kk * DN + j) as usize];
                        }
                    }
                }
                ci += comptime!(kernel.ni);
            }
        }
        #[unroll]
        for i in 0..DM {
            store_row(&acc, i * DN, DN, m0 + i, n0, pixels, bias, slopes, residual, output, &shape, kernel);
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
    /// Spatial stride: 1, or 2 for a layer uploaded [`strided`](Self::strided).
    pub step: usize,
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

/// PyTorch weights `[ci][co][4][4]` and bias of `ConvTranspose2d(ci, co, 4, stride 2,
/// padding 1)`, rewritten as a 3×3 convolution to `4·co` channels (channel `co·4 + py·2 +
/// px`) whose `pixel_shuffle(2)` is the transposed convolution: `[4·co][ci][3][3]` and the
/// bias repeated. Output row `2m + p` gathers input rows `m, m − 1` (taps 1, 3) for p = 0 and
/// `m + 1, m` (taps 0, 2) for p = 1.
pub fn transposed_4x4_as_shuffled(weights: &[f32], bias: &[f32], (cin, cout): (usize, usize)) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(weights.len(), cin * cout * 16, "transposed weight count");
    assert_eq!(bias.len(), cout, "transposed bias length");
    // [parity][tap of the new kernel] → tap of the 4×4 kernel.
    const TAP: [[Option<usize>; 3]; 2] = [[Some(3), Some(1), None], [None, Some(2), Some(0)]];
    let mut out = vec![0.0; 4 * cout * cin * 9];
    for co in 0..cout {
        for (py, rows) in TAP.iter().enumerate() {
            for (px, cols) in TAP.iter().enumerate() {
                let new_co = co * 4 + py * 2 + px;
                for ci in 0..cin {
                    for (ty, ky) in rows.iter().enumerate() {
                        for (tx, kx) in cols.iter().enumerate() {
                            if let (Some(ky), Some(kx)) = (ky, kx) {
                                out[((new_co * cin + ci) * 3 + ty) * 3 + tx] = weights[((ci * cout + co) * 4 + ky) * 4 + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    (out, bias.iter().flat_map(|&b| [b; 4]).collect())
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
        Self { elem: TypeId::of::<E>(), kt, k, step: 1, cin, cout, groups }
    }

    /// The same weights as a convolution of stride 2 (padding `(k − 1) / 2`): output pixel
    /// (y, x) reads around input pixel (2y, 2x); an `h × w` input gives `⌈h/2⌉ × ⌈w/2⌉`.
    pub fn strided(self) -> Self {
        Self { step: 2, ..self }
    }

    /// Output frame size for an `h × w` input.
    pub fn output_size(&self, (h, w): (usize, usize)) -> (usize, usize) {
        (h.div_ceil(self.step), w.div_ceil(self.step))
    }

    /// Whether PReLU slopes were given.
    fn has_slopes(&self) -> bool {
        self.groups.iter().all(|g| g.slopes.len() == g.count)
    }
}

/// The padded frame sequence a convolution reads: the `frames` frames of `head` (the first
/// `head_frames`) and `body` (the rest), `lead` frames before them — copies of the first, or
/// zeros with `zero_lead` — and `trail` copies of the last after: a temporal convolution's
/// padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub head_frames: usize,
    pub frames: usize,
    pub lead: usize,
    pub trail: usize,
    pub zero_lead: bool,
}

impl Sequence {
    /// `frames` frames of one buffer, unpadded.
    pub fn plain(frames: usize) -> Self {
        Self { head_frames: 0, frames, lead: 0, trail: 0, zero_lead: false }
    }

    /// Frames of the padded sequence (`None` when that overflows).
    pub fn padded_len(&self) -> Option<usize> {
        self.lead.checked_add(self.frames)?.checked_add(self.trail)
    }

    /// The frame padded position `p` reads (an index into head then body frames), `None`
    /// for a zero frame.
    pub fn frame(&self, p: usize) -> Option<usize> {
        if self.zero_lead && p < self.lead {
            return None;
        }
        Some(std::cmp::min(usize::saturating_sub(p, self.lead), usize::saturating_sub(self.frames, 1)))
    }
}

/// Where the input frames come from.
pub struct ConvInput<'a> {
    pub head: Option<&'a DeviceBuffer>,
    pub body: &'a DeviceBuffer,
    pub sequence: Sequence,
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
    /// Added before the activation (`act(r + scale · (conv + bias))`, a residual block whose
    /// activation follows the sum) instead of after it (`r + scale · act(conv + bias)`).
    pub before_activation: bool,
}

impl<'a> Residual<'a> {
    /// A dense residual of `channels` channels per pixel, added after the activation.
    pub fn dense(buffer: &'a DeviceBuffer, channels: usize, scale: f32) -> Self {
        Self { buffer, stride: channels, offset: 0, scale, before_activation: false }
    }

    /// Added before the activation instead.
    pub fn before_activation(self) -> Self {
        Self { before_activation: true, ..self }
    }
}

/// Runs the convolution: `padded_len − kt + 1` output frames of the input's [`Sequence`].
/// Every buffer holds `E`.
///
/// # Panics
/// When the sizes, strides or sequence do not fit the buffers (see the crate's docs).
pub fn conv<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    weights: &ConvWeights,
    input: &ConvInput,
    output: &ConvOutput,
    padding: Padding,
    strategy: Strategy,
) {
    let (max_x, max_y, _) = client.properties().hardware.max_cube_count;
    let limits = Limits { max_load: MAX_LOAD, max_cubes: (max_x, max_y) };
    conv_with_limits::<R, E>(client, weights, input, output, padding, strategy, limits);
}

/// Elements per vector load or store at most: 16 bytes of f32 (the widest load of most
/// GPUs); the tiled staging maps one load per thread at this width.
const MAX_LOAD: usize = 4;

/// What one launch may use: the widest vector (≤ [`MAX_LOAD`]) and the grid's x and y sizes.
#[derive(Clone, Copy)]
struct Limits {
    max_load: usize,
    max_cubes: (u32, u32),
}

/// The widest load of at most `max` elements the device has for `E` that divides every count.
fn load_width<R: Runtime, E: Element>(client: &ComputeClient<R>, max: usize, counts: &[usize]) -> usize {
    client
        .io_optimized_vector_sizes(size_of::<E>())
        .filter(|&n| n <= max)
        .find(|&n| counts.iter().all(|c| c % n == 0))
        .unwrap_or(1)
}

/// [`conv`] within `limits` (a `max_load` of 1 gives the scalar kernel).
fn conv_with_limits<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    weights: &ConvWeights,
    input: &ConvInput,
    output: &ConvOutput,
    padding: Padding,
    strategy: Strategy,
    limits: Limits,
) {
    assert!((1..=MAX_LOAD).contains(&limits.max_load), "loads of 1 to {MAX_LOAD} elements");
    assert!(weights.elem == TypeId::of::<E>(), "weights uploaded as another element type");
    let (h, w) = (input.height, input.width);
    let sequence = input.sequence;
    let padded = sequence.padded_len().expect("conv: padded frame count overflows");
    assert!(padded >= weights.kt, "conv: fewer padded frames than taps");
    assert!(sequence.frames > 0 && sequence.head_frames <= sequence.frames, "conv: no frames, or more head frames than frames");
    let out_frames = padded + 1 - weights.kt;
    assert!(input.stride >= weights.cin, "conv: input stride below the input channels");
    assert!(
        output.offset.checked_add(weights.cout).is_some_and(|end| end <= output.stride),
        "conv: output channels past the output stride"
    );
    let in_frame = product(&[h, w, input.stride], "conv input frame");
    let body_frames = sequence.frames - sequence.head_frames;
    assert!(product(&[body_frames, in_frame], "conv body") <= input.body.len(), "conv: body size");
    match input.head {
        Some(head) => assert!(product(&[sequence.head_frames, in_frame], "conv head") <= head.len(), "conv: head size"),
        None => assert!(sequence.head_frames == 0, "conv: head frames without a head"),
    }
    let (oh, ow) = weights.output_size((h, w));
    let pixels = product(&[out_frames, oh, ow], "conv output pixels");
    assert!(product(&[pixels, output.stride], "conv output") <= output.out.len(), "conv: output size");
    if padding == Padding::Reflect && weights.k == 3 {
        assert!(h >= 2 && w >= 2, "conv: reflect padding needs sides of at least 2");
    }
    // Offsets are u32 in the kernel, with the top bit marking body pixels.
    let largest = (input.body.len()).max(input.head.map_or(0, |h| h.len())).max(output.out.len());
    assert!(largest < 0x8000_0000 && padded < 0x8000_0000, "conv: buffers over 2^31 elements");
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
            assert!(
                r.offset.checked_add(weights.cout).is_some_and(|end| end <= r.stride),
                "conv: residual channels past its stride"
            );
            assert!(product(&[pixels, r.stride], "conv residual") <= r.buffer.len(), "conv: residual size");
            assert!(r.buffer.len() < 0x8000_0000, "conv: buffers over 2^31 elements");
            (Some(r.buffer), r.stride, r.offset, r.scale)
        }
        None => (None, 0, 0, 0.0),
    };
    // Pixels start at multiples of the stride, so a width dividing channels and stride keeps
    // every load aligned and wholly inside or outside the channels read.
    let ni = load_width::<R, E>(client, limits.max_load, &[weights.cin, input.stride]);
    // A buffer without frames (shorter than one pixel, so than one vector) is never read;
    // one with frames stands in for it, as a binding must hold at least one vector.
    let body = if input.body.len() >= ni { input.body } else { input.head.unwrap_or(input.body) };
    let head = input.head.filter(|h| h.len() >= ni).unwrap_or(body);
    for group in &weights.groups {
        let mut counts = vec![group.count, output.stride, output.offset + group.first];
        if residual.is_some() {
            counts.extend([residual_stride, residual_offset + group.first]);
        }
        let no = load_width::<R, E>(client, limits.max_load, &counts);
        let kernel = ConvConfig {
            kt: weights.kt as u32,
            k: weights.k as u32,
            step: weights.step as u32,
            padding,
            act,
            residual: output.residual.is_some(),
            residual_first: output.residual.is_some_and(|r| r.before_activation),
            ni: ni as u32,
            no: no as u32,
        };
        // Without a residual the bias stands in (never read): `no` divides its length.
        let residual = residual.unwrap_or(&group.bias);
        let shape = |first_pixel: usize| {
            ConvShapeLaunch::new(
                sequence.head_frames as u32,
                sequence.frames as u32,
                sequence.lead as u32,
                u32::from(sequence.zero_lead),
                out_frames as u32,
                h as u32,
                w as u32,
                oh as u32,
                ow as u32,
                weights.cin as u32,
                group.count as u32,
                input.stride as u32,
                output.stride as u32,
                (output.offset + group.first) as u32,
                residual_stride as u32,
                (residual_offset + group.first) as u32,
                slope,
                scale,
                first_pixel as u32,
            )
        };
        macro_rules! launch {
            ($kernel:ident, $count:expr, $dim:expr, $first_pixel:expr) => {
                // SAFETY: every read is bounds-checked against the sizes asserted above
                // (sequence, strides, head/body/residual lengths); writes stay
                // below `pixels × stride`, inside this group's channels. Vector loads and
                // stores start at multiples of their width (`ni`, `no` divide every offset).
                unsafe {
                    $kernel::launch_unchecked::<E, R>(
                        client,
                        $count,
                        $dim,
                        ni,
                        no,
                        head.vector_arg_of::<R, E>(client, ni),
                        body.vector_arg_of::<R, E>(client, ni),
                        group.weights.vector_arg_of::<R, E>(client, no),
                        group.bias.arg_of::<R, E>(client),
                        group.slopes.arg_of::<R, E>(client),
                        residual.vector_arg_of::<R, E>(client, no),
                        output.out.vector_arg_of::<R, E>(client, no),
                        shape($first_pixel),
                        kernel,
                    )
                }
            };
        }
        // Pixel tiles beyond the grid's limit (x for the tiled strategy, y for the direct one)
        // go to further launches.
        let (max_x, max_y) = limits.max_cubes;
        match strategy {
            Strategy::Tiled => {
                let per_launch = max_x as usize * BM as usize;
                for first in (0..pixels).step_by(per_launch) {
                    let tiles = ((pixels - first).min(per_launch) as u32).div_ceil(BM);
                    let count = CubeCount::Static(tiles, (group.count as u32).div_ceil(BN), 1);
                    launch!(conv_kernel, count, CubeDim::new_2d(THREADS, THREADS), first);
                }
            }
            Strategy::Direct => {
                let per_launch = max_y as usize * (DM * 8) as usize;
                for first in (0..pixels).step_by(per_launch) {
                    let groups = ((pixels - first).min(per_launch) as u32).div_ceil(DM * 8);
                    let count = CubeCount::Static((group.count as u32).div_ceil(DN * 8), groups, 1);
                    launch!(conv_direct_kernel, count, CubeDim::new_2d(8, 8), first);
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

    /// A 2-D convolution of one frame `[h][w][cin]` written as a sum over every pair of input
    /// and output pixels, with `weight(co, ci, (oy, ox), (y, x))` the weight tying them, if any.
    #[allow(clippy::type_complexity)]
    fn direct(
        x: &[f32],
        (h, w, cin): (usize, usize, usize),
        (oh, ow, cout): (usize, usize, usize),
        weight: &dyn Fn(usize, usize, (i64, i64), (i64, i64)) -> Option<f64>,
    ) -> Vec<f64> {
        let mut out = vec![0.0; oh * ow * cout];
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..cout {
                    let mut acc = 0.0;
                    for y in 0..h {
                        for xx in 0..w {
                            for ci in 0..cin {
                                if let Some(wgt) = weight(co, ci, (oy as i64, ox as i64), (y as i64, xx as i64)) {
                                    acc += wgt * f64::from(x[(y * w + xx) * cin + ci]);
                                }
                            }
                        }
                    }
                    out[(oy * ow + ox) * cout + co] = acc;
                }
            }
        }
        out
    }

    #[test]
    fn transposed_convolution_as_a_shuffled_3x3() {
        let mut rng = Rng::new(71);
        let (h, w, cin, cout) = (6, 4, 3, 5);
        let x = rng.vec_f32(h * w * cin, -1.0, 1.0);
        // Transposed 4×4, stride 2, padding 1: input (y, x) adds into output (2y − 1 + ky, 2x − 1 + kx).
        let weights = rng.vec_f32(cin * cout * 16, -1.0, 1.0);
        let bias = rng.vec_f32(cout, -1.0, 1.0);
        let mut want = direct(&x, (h, w, cin), (2 * h, 2 * w, cout), &|co, ci, (oy, ox), (y, xx)| {
            let (ky, kx) = (oy - 2 * y + 1, ox - 2 * xx + 1);
            ((0..4).contains(&ky) && (0..4).contains(&kx))
                .then(|| f64::from(weights[((ci * cout + co) * 4 + ky as usize) * 4 + kx as usize]))
        });
        for (i, v) in want.iter_mut().enumerate() {
            *v += f64::from(bias[i % cout]);
        }
        let (rewritten, repeated) = transposed_4x4_as_shuffled(&weights, &bias, (cin, cout));
        let got = conv_reference(&[&x], (h, w, cin), &rewritten, &repeated, (4 * cout, cin, 1, 3), Padding::Zeros, Activation::None, &[], None);
        let got: Vec<f32> = got.iter().map(|&v| v as f32).collect();
        let got = crate::layout::reference::pixel_shuffle(&got, (1, h, w, 4 * cout), 2);
        assert_close(&got, &want, 1e-6, "transposed 4x4 stride 2");
    }

    #[test]
    fn weight_groups_give_the_same_output() {
        let client = client();
        let mut rng = Rng::new(33);
        let (cin, h, w) = (5, 4, 3);
        // (cout, out stride, out offset, channels per group): scalar stores, and groups of 8
        // storing vectors of 4.
        for (cout, out_stride, offset, per_group) in [(70, 72, 1, 9), (72, 76, 4, 8)] {
            let torch_weights = rng.vec_f32(cout * cin * 27, -0.5, 0.5);
            let bias = rng.vec_f32(cout, -0.5, 0.5);
            let slopes = rng.vec_f32(cout, 0.0, 0.5);
            let x = DeviceBuffer::from_f32(&client, &rng.vec_f32(3 * h * w * cin, -1.0, 1.0));
            let residual = DeviceBuffer::from_f32(&client, &rng.vec_f32(h * w * cout, -1.0, 1.0));
            for strategy in [Strategy::Tiled, Strategy::Direct] {
                let run = |limit: usize| {
                    let weights = ConvWeights::upload_within::<_, f32>(
                        &client,
                        &torch_weights,
                        Some(&bias),
                        Some(&slopes),
                        (cout, cin, 3, 3),
                        limit,
                    );
                    let out = poisoned::<f32>(&client, h * w * out_stride);
                    let input = ConvInput {
                        head: None,
                        body: &x,
                        sequence: Sequence::plain(3),
                        height: h,
                        width: w,
                        stride: cin,
                    };
                    let output = ConvOutput {
                        out: &out,
                        stride: out_stride,
                        offset,
                        activation: Activation::PRelu,
                        residual: Some(Residual::dense(&residual, cout, 0.5)),
                    };
                    conv::<_, f32>(&client, &weights, &input, &output, Padding::Replicate, strategy);
                    (weights.groups.len(), read_as_f32::<f32>(&client, out.handle().clone()))
                };
                let (one, whole) = run(usize::MAX);
                let (many, grouped) = run(27 * cin * 4 * per_group);
                assert_eq!((one, many), (1, cout.div_ceil(per_group)));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&whole), bits(&grouped), "{strategy:?}, {cout} channels at {offset}");
            }
        }
    }

    #[test]
    fn grids_split_over_launches_give_the_same_output() {
        let client = client();
        let mut rng = Rng::new(37);
        let (cin, cout, h, w) = (4, 8, 9, 23);
        let torch_weights = rng.vec_f32(cout * cin * 27, -0.5, 0.5);
        let weights = ConvWeights::upload::<_, f32>(&client, &torch_weights, None, None, (cout, cin, 3, 3));
        let x = DeviceBuffer::from_f32(&client, &rng.vec_f32(4 * h * w * cin, -1.0, 1.0));
        let input = ConvInput {
            head: None,
            body: &x,
            sequence: Sequence { head_frames: 0, frames: 4, lead: 1, trail: 1, zero_lead: false },
            height: h,
            width: w,
            stride: cin,
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for strategy in [Strategy::Tiled, Strategy::Direct] {
            let run = |max_cubes: (u32, u32)| {
                let out = poisoned::<f32>(&client, 4 * h * w * cout);
                let output =
                    ConvOutput { out: &out, stride: cout, offset: 0, activation: Activation::None, residual: None };
                let limits = Limits { max_load: MAX_LOAD, max_cubes };
                conv_with_limits::<_, f32>(&client, &weights, &input, &output, Padding::Zeros, strategy, limits);
                read_as_f32::<f32>(&client, out.handle().clone())
            };
            // 828 pixels: 13 tiles of 64 (tiled) or 13 groups of 64 (direct), 2 per launch.
            let (whole, split) = (run((u32::MAX, u32::MAX)), run((2, 2)));
            assert!(whole.iter().all(|v| !v.is_nan()), "{strategy:?}: every output written");
            assert_eq!(bits(&whole), bits(&split), "{strategy:?}");
        }
    }

    #[test]
    fn vector_loads_match_scalar_loads_bit_for_bit() {
        let client = client();
        let mut rng = Rng::new(35);
        let widest = load_width::<_, f32>(&client, MAX_LOAD, &[MAX_LOAD]);
        // (cin, in stride, cout, out stride, out offset, residual stride): widths 4/4, 4/2, 2/1.
        for (cin, in_stride, cout, out_stride, offset, residual_stride, widths) in
            [(8, 12, 68, 72, 4, 68, (4, 4)), (20, 20, 6, 10, 2, 6, (4, 2)), (6, 6, 5, 5, 0, 5, (2, 1))]
        {
            let input_width = load_width::<_, f32>(&client, MAX_LOAD, &[cin, in_stride]);
            let output_width = load_width::<_, f32>(&client, MAX_LOAD, &[cout, out_stride, offset, residual_stride]);
            assert_eq!((input_width, output_width), (widths.0.min(widest), widths.1.min(widest)));
            let (h, w) = (5, 7);
            let torch_weights = rng.vec_f32(cout * cin * 27, -0.5, 0.5);
            let bias = rng.vec_f32(cout, -0.5, 0.5);
            let head = DeviceBuffer::from_f32(&client, &rng.vec_f32(2 * h * w * in_stride, -1.0, 1.0));
            let body = DeviceBuffer::from_f32(&client, &rng.vec_f32(2 * h * w * in_stride, -1.0, 1.0));
            let residual = DeviceBuffer::from_f32(&client, &rng.vec_f32(2 * h * w * residual_stride, -1.0, 1.0));
            let weights =
                ConvWeights::upload::<_, f32>(&client, &torch_weights, Some(&bias), None, (cout, cin, 3, 3));
            let input = ConvInput {
                head: Some(&head),
                body: &body,
                sequence: Sequence { head_frames: 2, frames: 4, lead: 0, trail: 0, zero_lead: false },
                height: h,
                width: w,
                stride: in_stride,
            };
            for strategy in [Strategy::Tiled, Strategy::Direct] {
                let run = |max_load: usize| {
                    let out = poisoned::<f32>(&client, 2 * h * w * out_stride);
                    let output = ConvOutput {
                        out: &out,
                        stride: out_stride,
                        offset,
                        activation: Activation::Silu,
                        residual: Some(Residual::dense(&residual, residual_stride, 0.5)),
                    };
                    let limits = Limits { max_load, max_cubes: (u32::MAX, u32::MAX) };
                    conv_with_limits::<_, f32>(&client, &weights, &input, &output, Padding::Reflect, strategy, limits);
                    read_as_f32::<f32>(&client, out.handle().clone())
                };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let (scalar, vector) = (run(1), run(MAX_LOAD));
                let what = format!("{strategy:?} {cin}/{in_stride} -> {cout}/{out_stride}+{offset}");
                assert!(scalar.iter().any(|v| !v.is_nan()), "{what}: nothing written");
                assert_eq!(bits(&scalar), bits(&vector), "{what}");
            }
        }
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
            // Some cases in multiples of 4, so vector loads run too.
            let align = [1, 4][(case / 3) % 2];
            let cin = align * rng.range(1, 40 / align);
            let cout = align * rng.range(1, 70 / align);
            let in_stride = cin + align * rng.range(0, 2);
            let (head_frames, body_frames) = (rng.range(0, 2), rng.range(0, 3));
            let body_frames = std::cmp::max(body_frames, usize::from(head_frames == 0));
            // Head and body frames, with first/last-frame padding.
            let frames = head_frames + body_frames;
            let (lead, trail) = (rng.range(0, 2), rng.range(0, 2));
            let trail = std::cmp::max(trail, usize::saturating_sub(kt, lead + frames));
            let sequence = Sequence { head_frames, frames, lead, trail, zero_lead: case % 4 == 1 };
            let out_frames = sequence.padded_len().unwrap() + 1 - kt;
            let frame_len = h * w * in_stride;
            let head = rounded::<E>(rng.vec_f32(head_frames.max(1) * frame_len, -1.0, 1.0));
            let body = rounded::<E>(rng.vec_f32(body_frames.max(1) * frame_len, -1.0, 1.0));
            let torch_weights = rounded::<E>(rng.vec_f32(cout * cin * kt * k * k, -0.5, 0.5));
            let bias = rounded::<E>(rng.vec_f32(cout, -0.5, 0.5));
            let slopes = rounded::<E>(rng.vec_f32(cout, 0.0, 0.5));
            let out_stride = cout + align * rng.range(0, 2);
            let out_offset = out_stride - cout - align * rng.range(0, (out_stride - cout) / align);
            let residual = (case % 5 == 0)
                .then(|| rounded::<E>(rng.vec_f32(out_frames * h * w * cout, -1.0, 1.0)));
            let before_activation = case % 10 == 5;
            // Some cases of stride 2 (without a residual: the reference subsamples stride 1).
            let step = if case % 4 == 3 && residual.is_none() { 2 } else { 1 };
            let (oh, ow) = (h.div_ceil(step), w.div_ceil(step));

            let weights = ConvWeights::upload::<_, E>(
                &client,
                &torch_weights,
                Some(&bias),
                matches!(activation, Activation::PRelu).then_some(&slopes[..]),
                (cout, cin, kt, k),
            );
            let weights = if step == 2 { weights.strided() } else { weights };
            let head_buf = DeviceBuffer::from_f32_as::<_, E>(&client, &head);
            let body_buf = DeviceBuffer::from_f32_as::<_, E>(&client, &body);
            let residual_buf = residual.as_ref().map(|r| DeviceBuffer::from_f32_as::<_, E>(&client, r));
            let out = poisoned::<E>(&client, out_frames * oh * ow * out_stride);
            let input = ConvInput {
                head: (head_frames > 0).then_some(&head_buf),
                body: &body_buf,
                sequence,
                height: h,
                width: w,
                stride: in_stride,
            };
            let output = ConvOutput {
                out: &out,
                stride: out_stride,
                offset: out_offset,
                activation,
                residual: residual_buf.as_ref().map(|r| {
                    let r = Residual::dense(r, cout, 0.2);
                    if before_activation { r.before_activation() } else { r }
                }),
            };
            let strategy = [Strategy::Tiled, Strategy::Direct][(case % 2) ^ ((case / 2) % 2)];
            conv::<_, E>(&client, &weights, &input, &output, padding, strategy);
            let got = read_as_f32::<E>(&client, out.handle().clone());
            let zeros = vec![0.0; frame_len];
            let padded: Vec<&[f32]> = (0..out_frames + kt - 1)
                .map(|p| {
                    let Some(f) = sequence.frame(p) else {
                        return &zeros[..];
                    };
                    if f < head_frames {
                        &head[f * frame_len..(f + 1) * frame_len]
                    } else {
                        &body[(f - head_frames) * frame_len..(f - head_frames + 1) * frame_len]
                    }
                })
                .collect();
            let want = conv_reference(
                &padded,
                (h, w, in_stride),
                &torch_weights,
                &bias,
                (cout, cin, kt, k),
                padding,
                if before_activation { Activation::None } else { activation },
                &slopes,
                residual.as_deref().map(|r| (r, 0.2)),
            );
            // A residual before the activation: the activation applied to the sum.
            let want: Vec<f64> = if before_activation {
                want.iter()
                    .enumerate()
                    .map(|(i, &v)| match activation {
                        Activation::None => v,
                        Activation::LeakyRelu(s) => if v >= 0.0 { v } else { v * f64::from(s) },
                        Activation::PRelu => if v >= 0.0 { v } else { v * f64::from(slopes[i % cout]) },
                        Activation::Silu => v / (1.0 + (-v).exp()),
                    })
                    .collect()
            } else {
                want
            };
            // Stride 2: the stride-1 outputs at even positions.
            let want: Vec<f64> = if step == 2 {
                want.chunks(cout)
                    .enumerate()
                    .filter(|(p, _)| (p / w % h) % 2 == 0 && (p % w) % 2 == 0)
                    .flat_map(|(_, px)| px.to_vec())
                    .collect()
            } else {
                want
            };
            let got_slice: Vec<f32> = got
                .chunks(out_stride)
                .flat_map(|px| px[out_offset..out_offset + cout].to_vec())
                .collect();
            let what = format!(
                "case {case}: {strategy:?} {kt}x{k}x{k} {padding:?} {activation:?} {h}x{w} \
                 {cin}->{cout} {sequence:?} residual before the activation: {before_activation}, stride {step}"
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
