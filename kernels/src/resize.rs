//! Separable resampling (bicubic, Lanczos-3) by any factor, up or down.
//!
//! The weights follow the convolution-based resampling of Pillow: pixel centres are aligned,
//! the filter is widened by the reduction factor when shrinking (so downscaling antialiases),
//! taps outside the image are dropped and each output's weights are normalised to sum to 1.
//! The weights of each axis are tabulated on the host once per size and the kernel runs one
//! pass per axis (width, then height), clamping the result to [0, 1].

use cubecl::prelude::*;

use crate::DeviceBuffer;
use crate::launch::product;

/// The interpolation filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Linear interpolation (a triangle filter).
    Bilinear,
    /// Cubic convolution with a = −0.5 (Keys; Pillow's `BICUBIC`).
    Bicubic,
    /// Windowed sinc with three lobes.
    Lanczos3,
}

impl Filter {
    /// Half-width of the filter at scale 1, in input pixels.
    pub fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos3 => 3.0,
        }
    }

    /// The filter's value at distance `x` (input pixels at scale 1).
    pub fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos3 => {
                if x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// The error of parsing an unknown filter name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFilter(pub String);

impl std::fmt::Display for UnknownFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown filter `{}` (expected lanczos, bicubic or bilinear)", self.0)
    }
}

impl std::error::Error for UnknownFilter {}

impl std::str::FromStr for Filter {
    type Err = UnknownFilter;

    fn from_str(s: &str) -> Result<Self, UnknownFilter> {
        match s.to_ascii_lowercase().as_str() {
            "bilinear" | "linear" => Ok(Filter::Bilinear),
            "bicubic" | "cubic" => Ok(Filter::Bicubic),
            "lanczos" | "lanczos3" => Ok(Filter::Lanczos3),
            _ => Err(UnknownFilter(s.to_string())),
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// The taps of one axis: output `i` reads the `taps` inputs from `start[i]` with weights
/// `weights[i * taps ..]`. Every window has the same length and lies inside the axis (windows
/// at the edges are shifted inwards and padded with zero weights), so the kernels' loops have
/// one trip count for all threads.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisTaps {
    pub in_len: usize,
    pub out_len: usize,
    pub taps: usize,
    pub start: Vec<u32>,
    pub weights: Vec<f32>,
}

impl AxisTaps {
    pub fn new(in_len: usize, out_len: usize, filter: Filter) -> Self {
        assert!(in_len > 0 && out_len > 0, "resampling needs non-empty axes");
        let scale = in_len as f64 / out_len as f64;
        let widen = scale.max(1.0);
        let support = filter.support() * widen;
        let taps = ((support.ceil() as usize) * 2 + 1).min(in_len);
        let mut start = Vec::with_capacity(out_len);
        let mut weights = vec![0.0f32; out_len * taps];
        for i in 0..out_len {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0) as usize).min(in_len - 1);
            let hi = ((center + support + 0.5).floor() as usize).clamp(lo + 1, in_len);
            let n = (hi - lo).min(taps);
            let raw: Vec<f64> = (0..n)
                .map(|k| filter.eval((lo as f64 + k as f64 - center + 0.5) / widen))
                .collect();
            let sum: f64 = raw.iter().sum();
            let first = lo.min(in_len - taps);
            for (k, w) in raw.iter().enumerate() {
                let at = i * taps + lo - first + k;
                weights[at] = if sum != 0.0 { (w / sum) as f32 } else { 0.0 };
            }
            start.push(first as u32);
        }
        Self { in_len, out_len, taps, start, weights }
    }
}

/// The device tables of one axis.
struct AxisTables {
    taps: AxisTaps,
    start: DeviceBuffer,
    weights: DeviceBuffer,
}

impl AxisTables {
    fn upload<R: Runtime>(client: &ComputeClient<R>, taps: AxisTaps) -> Self {
        Self {
            start: DeviceBuffer::from_u32(client, &taps.start),
            weights: DeviceBuffer::from_f32(client, &taps.weights),
            taps,
        }
    }
}

/// A resampling from `in_h × in_w` to `out_h × out_w` with its weights uploaded: built once
/// per stream, run per chunk.
pub struct ResizePlan {
    pub channels: usize,
    /// Frames of the largest chunk: scratch buffers are sized for it.
    pub chunk_frames: usize,
    horizontal: AxisTables,
    vertical: AxisTables,
}

impl ResizePlan {
    pub fn new<R: Runtime>(
        client: &ComputeClient<R>,
        (in_h, in_w): (usize, usize),
        (out_h, out_w): (usize, usize),
        channels: usize,
        filter: Filter,
        chunk_frames: usize,
    ) -> Self {
        Self {
            channels,
            chunk_frames,
            horizontal: AxisTables::upload(client, AxisTaps::new(in_w, out_w, filter)),
            vertical: AxisTables::upload(client, AxisTaps::new(in_h, out_h, filter)),
        }
    }

    /// Values of `frames` input frames.
    ///
    /// # Panics
    /// When the count overflows.
    pub fn input_len(&self, frames: usize) -> usize {
        product(&[frames, self.vertical.taps.in_len, self.horizontal.taps.in_len, self.channels], "resize input")
    }

    /// Values of `frames` output frames (panics as [`input_len`](Self::input_len)).
    pub fn output_len(&self, frames: usize) -> usize {
        product(&[frames, self.vertical.taps.out_len, self.horizontal.taps.out_len, self.channels], "resize output")
    }
}

/// The horizontal pass: `[rows, in_w, C]` → `[rows, out_w, C]`. A thread computes one value;
/// x runs over a row's `out_w × C` values, y over the rows of this launch.
#[cube(launch_unchecked)]
fn resample_rows_kernel(
    input: &Array<f32>,
    output: &mut Array<f32>,
    start: &Array<u32>,
    weights: &Array<f32>,
    taps: u32,
    in_w: u32,
    out_w: u32,
    first_row: u32,
    #[comptime] channels: u32,
) {
    let x = ABSOLUTE_POS_X;
    if x < out_w * channels {
        let row = (first_row + ABSOLUTE_POS_Y) as usize;
        let j = x / channels;
        let c = x % channels;
        let weight_row = (j * taps) as usize;
        let mut at = (row * in_w as usize + start[j as usize] as usize) * channels as usize + c as usize;
        let mut acc = 0.0f32;
        for k in 0..taps as usize {
            acc += weights[weight_row + k] * input[at];
            at += channels as usize;
        }
        output[row * (out_w * channels) as usize + x as usize] = acc;
    }
}

/// The vertical pass: `[frames, in_h, row_len]` → `[frames, out_h, row_len]`, clamped to
/// [0, 1]. x runs over a row's values, y over output rows, z over the frames of this launch.
#[cube(launch_unchecked)]
fn resample_columns_kernel(
    input: &Array<f32>,
    output: &mut Array<f32>,
    start: &Array<u32>,
    weights: &Array<f32>,
    taps: u32,
    in_h: u32,
    out_h: u32,
    row_len: u32,
    first_frame: u32,
) {
    let x = ABSOLUTE_POS_X;
    let j = ABSOLUTE_POS_Y;
    if x < row_len && j < out_h {
        let frame = (first_frame + ABSOLUTE_POS_Z) as usize;
        let row_len = row_len as usize;
        let weight_row = (j * taps) as usize;
        let mut at = (frame * in_h as usize + start[j as usize] as usize) * row_len + x as usize;
        let mut acc = 0.0f32;
        for k in 0..taps as usize {
            acc += weights[weight_row + k] * input[at];
            at += row_len;
        }
        output[(frame * out_h as usize + j as usize) * row_len + x as usize] = clamp(acc, 0.0f32, 1.0f32);
    }
}

/// Threads per cube along x of the resampling passes.
const PASS_CUBE_X: u32 = 64;

/// Splits `items` into launches of at most `limit` along one grid axis.
fn groups(items: usize, limit: u32) -> impl Iterator<Item = (u32, u32)> {
    let limit = limit.max(1) as usize;
    (0..items).step_by(limit).map(move |first| (first as u32, (items - first).min(limit) as u32))
}

/// Resamples `frames` frames `[frames, in_h, in_w, c]` into `out` (`[frames, out_h, out_w,
/// c]`), clamped to [0, 1].
pub fn resize<R: Runtime>(
    client: &ComputeClient<R>,
    plan: &ResizePlan,
    input: &DeviceBuffer,
    frames: usize,
    out: &DeviceBuffer,
) {
    assert_eq!(input.len(), plan.input_len(frames), "resize input size");
    assert_eq!(out.len(), plan.output_len(frames), "resize output size");
    if frames == 0 {
        return;
    }
    let c = plan.channels;
    let (h, v) = (&plan.horizontal, &plan.vertical);
    let (in_h, out_w) = (v.taps.in_len, h.taps.out_len);
    let row_len = out_w * c;
    let between = DeviceBuffer::empty_f32_with_room(
        client,
        product(&[frames, in_h, row_len], "resize intermediate"),
        product(&[plan.chunk_frames, in_h, row_len], "resize intermediate"),
    );
    let max = client.properties().hardware.max_cube_count;
    let dim = CubeDim::new_1d(PASS_CUBE_X);
    let cubes_x = |values: usize| (values as u32).div_ceil(PASS_CUBE_X);
    // SAFETY: the tables have `out_len` (× `taps`) entries with start + taps ≤ in_len, the
    // buffer sizes were checked above, and the grids cover exactly the checked ranges.
    for (first_row, rows) in groups(frames * in_h, max.1) {
        let count = CubeCount::Static(cubes_x(out_w * c), rows, 1);
        unsafe {
            resample_rows_kernel::launch_unchecked(
                client,
                count,
                dim,
                input.arg_of::<R, f32>(client),
                between.arg_of::<R, f32>(client),
                h.start.arg_of::<R, u32>(client),
                h.weights.arg_of::<R, f32>(client),
                h.taps.taps as u32,
                h.taps.in_len as u32,
                out_w as u32,
                first_row,
                c as u32,
            );
        }
    }
    for (first_frame, group) in groups(frames, max.2) {
        let count = CubeCount::Static(cubes_x(row_len), v.taps.out_len as u32, group);
        unsafe {
            resample_columns_kernel::launch_unchecked(
                client,
                count,
                dim,
                between.arg_of::<R, f32>(client),
                out.arg_of::<R, f32>(client),
                v.start.arg_of::<R, u32>(client),
                v.weights.arg_of::<R, f32>(client),
                v.taps.taps as u32,
                in_h as u32,
                v.taps.out_len as u32,
                row_len as u32,
                first_frame,
            );
        }
    }
}

/// CPU reference of [`resize`]: each output is the 2-D weighted sum over its input window,
/// in f64, then clamped.
pub fn resize_reference(
    input: &[f32],
    (frames, in_h, in_w, c): (usize, usize, usize, usize),
    (out_h, out_w): (usize, usize),
    filter: Filter,
) -> Vec<f64> {
    let wy = reference_weights(in_h, out_h, filter);
    let wx = reference_weights(in_w, out_w, filter);
    let mut out = Vec::with_capacity(frames * out_h * out_w * c);
    for f in 0..frames {
        for ys in wy.iter() {
            for xs in &wx {
                for ch in 0..c {
                    let mut acc = 0.0;
                    for &(y, wyv) in ys {
                        for &(x, wxv) in xs {
                            let v = input[((f * in_h + y) * in_w + x) * c + ch];
                            acc += wyv * wxv * f64::from(v);
                        }
                    }
                    out.push(acc.clamp(0.0, 1.0));
                }
            }
        }
    }
    out
}

/// For each output position: (input index, normalised weight) over the filter's window.
fn reference_weights(in_len: usize, out_len: usize, filter: Filter) -> Vec<Vec<(usize, f64)>> {
    let scale = in_len as f64 / out_len as f64;
    let widen = scale.max(1.0);
    let radius = filter.support() * widen;
    (0..out_len)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let taps: Vec<(usize, f64)> = (0..in_len)
                .filter(|&x| (x as f64 + 0.5 - center).abs() < radius)
                .map(|x| (x, filter.eval((x as f64 + 0.5 - center) / widen)))
                .collect();
            let sum: f64 = taps.iter().map(|t| t.1).sum();
            taps.into_iter().map(|(x, w)| (x, w / sum)).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, client, poisoned_f32, read_f32, Rng};

    #[test]
    fn matches_reference_on_random_shapes() {
        let client = client();
        let mut rng = Rng::new(7);
        for case in 0..24 {
            let filter = [Filter::Bicubic, Filter::Lanczos3, Filter::Bilinear][case % 3];
            let frames = rng.range(1, 3);
            let (in_h, in_w) = (rng.range(1, 40), rng.range(1, 40));
            let (out_h, out_w) = (rng.range(1, 70), rng.range(1, 70));
            let c = [1, 3, 4][rng.range(0, 2)];
            let data = rng.vec_f32(frames * in_h * in_w * c, 0.0, 1.0);
            let input = DeviceBuffer::from_f32(&client, &data);
            let plan = ResizePlan::new(&client, (in_h, in_w), (out_h, out_w), c, filter, frames);
            let out = poisoned_f32(&client, plan.output_len(frames));
            resize(&client, &plan, &input, frames, &out);
            let got = read_f32(&client, out.handle().clone());
            let want = resize_reference(&data, (frames, in_h, in_w, c), (out_h, out_w), filter);
            let what = format!("case {case}: {filter:?} {in_h}x{in_w} -> {out_h}x{out_w} c{c}");
            // An absolute bound: the values live in [0, 1].
            assert_close(&got, &want, 1e-4, &what);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let client = client();
        for filter in [Filter::Bicubic, Filter::Lanczos3] {
            for (in_len, out_len) in [(7, 23), (23, 7), (5, 5), (1, 9)] {
                let data = vec![0.375f32; in_len * in_len * 3];
                let input = DeviceBuffer::from_f32(&client, &data);
                let plan =
                    ResizePlan::new(&client, (in_len, in_len), (out_len, out_len), 3, filter, 1);
                let out = poisoned_f32(&client, plan.output_len(1));
                resize(&client, &plan, &input, 1, &out);
                for v in read_f32(&client, out.handle().clone()) {
                    assert!((v - 0.375).abs() < 1e-6, "{filter:?} {in_len}->{out_len}: {v}");
                }
            }
        }
    }

    #[test]
    fn taps_match_the_reference_windows() {
        for filter in [Filter::Bicubic, Filter::Lanczos3] {
            for (i, o) in [(10, 20), (20, 10), (640, 1280), (1280, 333), (3, 1)] {
                let taps = AxisTaps::new(i, o, filter);
                let reference = reference_weights(i, o, filter);
                for (j, window) in reference.iter().enumerate() {
                    let ours: Vec<(usize, f64)> = (0..taps.taps)
                        .map(|k| {
                            let w = f64::from(taps.weights[j * taps.taps + k]);
                            (taps.start[j] as usize + k, w)
                        })
                        .filter(|t| t.1 != 0.0)
                        .collect();
                    let theirs: Vec<&(usize, f64)> =
                        window.iter().filter(|t| t.1.abs() > 1e-12).collect();
                    assert_eq!(ours.len(), theirs.len(), "{filter:?} {i}->{o} output {j}");
                    for (a, b) in ours.iter().zip(theirs) {
                        assert_eq!(a.0, b.0);
                        assert!((a.1 - b.1).abs() < 1e-6);
                    }
                }
            }
        }
    }
}
