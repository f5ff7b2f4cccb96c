//! Separable resampling (bicubic, Lanczos-3) by any factor, up or down.
//!
//! The weights follow the convolution-based resampling of Pillow: pixel centres are aligned,
//! the filter is widened by the reduction factor when shrinking (so downscaling antialiases),
//! taps outside the image are dropped and each output's weights are normalised to sum to 1.
//! The weights of each axis are tabulated on the host once per size and the kernel runs one
//! pass per axis (width, then height), clamping the result to [0, 1].

use cubecl::prelude::*;

use crate::launch::{cube_count, cube_dim};
use crate::DeviceBuffer;

/// The interpolation filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Cubic convolution with a = −0.5 (Keys; Pillow's `BICUBIC`).
    Bicubic,
    /// Windowed sinc with three lobes.
    Lanczos3,
}

impl Filter {
    /// Half-width of the filter at scale 1, in input pixels.
    pub fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Lanczos3 => 3.0,
        }
    }

    /// The filter's value at distance `x` (input pixels at scale 1).
    pub fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
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
        write!(f, "unknown filter `{}` (expected lanczos or bicubic)", self.0)
    }
}

impl std::error::Error for UnknownFilter {}

impl std::str::FromStr for Filter {
    type Err = UnknownFilter;

    fn from_str(s: &str) -> Result<Self, UnknownFilter> {
        match s.to_ascii_lowercase().as_str() {
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

/// The taps of one axis: output `i` reads inputs `start[i] .. start[i] + count[i]` with
/// weights `weights[i * taps ..]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisTaps {
    pub in_len: usize,
    pub out_len: usize,
    pub taps: usize,
    pub start: Vec<u32>,
    pub count: Vec<u32>,
    pub weights: Vec<f32>,
}

impl AxisTaps {
    pub fn new(in_len: usize, out_len: usize, filter: Filter) -> Self {
        assert!(in_len > 0 && out_len > 0, "resampling needs non-empty axes");
        let scale = in_len as f64 / out_len as f64;
        let widen = scale.max(1.0);
        let support = filter.support() * widen;
        let taps = (support.ceil() as usize) * 2 + 1;
        let mut start = Vec::with_capacity(out_len);
        let mut count = Vec::with_capacity(out_len);
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
            for (k, w) in raw.iter().enumerate() {
                weights[i * taps + k] = if sum != 0.0 { (w / sum) as f32 } else { 0.0 };
            }
            start.push(lo as u32);
            count.push(n as u32);
        }
        Self { in_len, out_len, taps, start, count, weights }
    }
}

/// The device tables of one axis.
struct AxisTables {
    taps: AxisTaps,
    start: DeviceBuffer,
    count: DeviceBuffer,
    weights: DeviceBuffer,
}

impl AxisTables {
    fn upload<R: Runtime>(client: &ComputeClient<R>, taps: AxisTaps) -> Self {
        Self {
            start: DeviceBuffer::from_u32(client, &taps.start),
            count: DeviceBuffer::from_u32(client, &taps.count),
            weights: DeviceBuffer::from_f32(client, &taps.weights),
            taps,
        }
    }
}

/// A resampling from `in_h × in_w` to `out_h × out_w` with its weights uploaded: built once
/// per stream, run per chunk.
pub struct ResizePlan {
    pub channels: usize,
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
    ) -> Self {
        Self {
            channels,
            horizontal: AxisTables::upload(client, AxisTaps::new(in_w, out_w, filter)),
            vertical: AxisTables::upload(client, AxisTaps::new(in_h, out_h, filter)),
        }
    }

    pub fn input_len(&self, frames: usize) -> usize {
        frames * self.vertical.taps.in_len * self.horizontal.taps.in_len * self.channels
    }

    pub fn output_len(&self, frames: usize) -> usize {
        frames * self.vertical.taps.out_len * self.horizontal.taps.out_len * self.channels
    }
}

/// One pass along the middle axis of `[outer, in_len, inner]` → `[outer, out_len, inner]`.
#[cube(launch_unchecked)]
fn resample_axis_kernel(
    input: &Array<f32>,
    output: &mut Array<f32>,
    start: &Array<u32>,
    count: &Array<u32>,
    weights: &Array<f32>,
    taps: u32,
    in_len: u32,
    out_len: u32,
    inner: u32,
    #[comptime] clamp_unit: bool,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let inner = inner as usize;
        let out_len = out_len as usize;
        let i_inner = o % inner;
        let rest = o / inner;
        let j = rest % out_len;
        let outer = rest / out_len;
        let first = start[j] as usize;
        let n = count[j] as usize;
        let row = j * taps as usize;
        let mut at = (outer * in_len as usize + first) * inner + i_inner;
        let mut acc = 0.0f32;
        for k in 0..n {
            acc += weights[row + k] * input[at];
            at += inner;
        }
        if clamp_unit {
            acc = clamp(acc, 0.0f32, 1.0f32);
        }
        output[o] = acc;
    }
}

fn resample_axis<R: Runtime>(
    client: &ComputeClient<R>,
    axis: &AxisTables,
    input: &DeviceBuffer,
    outer: usize,
    inner: usize,
    output: &DeviceBuffer,
    clamp_unit: bool,
) {
    let t = &axis.taps;
    assert_eq!(input.len, outer * t.in_len * inner, "resample input size");
    assert_eq!(output.len, outer * t.out_len * inner, "resample output size");
    // SAFETY: the tables have `out_len` (× `taps`) entries, every start + count ≤ in_len, and
    // the sizes of input and output were checked above.
    unsafe {
        resample_axis_kernel::launch_unchecked(
            client,
            cube_count(client, output.len),
            cube_dim(),
            input.arg(),
            output.arg(),
            axis.start.arg(),
            axis.count.arg(),
            axis.weights.arg(),
            t.taps as u32,
            t.in_len as u32,
            t.out_len as u32,
            inner as u32,
            clamp_unit,
        );
    }
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
    if frames == 0 {
        return;
    }
    let c = plan.channels;
    let (in_h, out_w) = (plan.vertical.taps.in_len, plan.horizontal.taps.out_len);
    let between = DeviceBuffer::empty_f32(client, frames * in_h * out_w * c);
    resample_axis(client, &plan.horizontal, input, frames * in_h, c, &between, false);
    resample_axis(client, &plan.vertical, &between, frames, out_w * c, out, true);
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
        for (_, ys) in wy.iter().enumerate() {
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
            let filter = if case % 2 == 0 { Filter::Bicubic } else { Filter::Lanczos3 };
            let frames = rng.range(1, 3);
            let (in_h, in_w) = (rng.range(1, 40), rng.range(1, 40));
            let (out_h, out_w) = (rng.range(1, 70), rng.range(1, 70));
            let c = [1, 3, 4][rng.range(0, 2)];
            let data = rng.vec_f32(frames * in_h * in_w * c, 0.0, 1.0);
            let input = DeviceBuffer::from_f32(&client, &data);
            let plan = ResizePlan::new(&client, (in_h, in_w), (out_h, out_w), c, filter);
            let out = poisoned_f32(&client, plan.output_len(frames));
            resize(&client, &plan, &input, frames, &out);
            let got = read_f32(&client, out.handle);
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
                    ResizePlan::new(&client, (in_len, in_len), (out_len, out_len), 3, filter);
                let out = poisoned_f32(&client, plan.output_len(1));
                resize(&client, &plan, &input, 1, &out);
                for v in read_f32(&client, out.handle) {
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
                    let n = taps.count[j] as usize;
                    let ours: Vec<(usize, f64)> = (0..n)
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
