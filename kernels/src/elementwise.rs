//! `out = a + s·b` with an optional clamp to [0, 1]: residual sums outside a convolution's
//! epilogue, and the final clamp of a model's output.

use cubecl::prelude::*;

use crate::launch::{cube_count, cube_dim};
use crate::{DeviceBuffer, Element};

#[cube(launch_unchecked)]
fn combine_kernel<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    out: &mut Array<F>,
    scale: f32,
    #[comptime] with_b: bool,
    #[comptime] clamp_unit: bool,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let mut v = f32::cast_from(a[i]);
        if comptime!(with_b) {
            v += scale * f32::cast_from(b[i]);
        }
        if comptime!(clamp_unit) {
            v = clamp(v, 0.0f32, 1.0f32);
        }
        out[i] = F::cast_from(v);
    }
}

/// `out = a + scale · b` (or `a` alone), clamped to [0, 1] when asked; `out` may be `a`.
pub fn combine<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    a: &DeviceBuffer,
    b: Option<(&DeviceBuffer, f32)>,
    clamp_unit: bool,
    out: &DeviceBuffer,
) {
    assert_eq!(a.len(), out.len(), "combine sizes");
    if let Some((b, _)) = b {
        assert_eq!(b.len(), out.len(), "combine sizes");
    }
    if out.is_empty() {
        return;
    }
    let (b_buf, scale) = b.unwrap_or((a, 0.0));
    // SAFETY: one read of each input and one write per index below `out.len()`.
    unsafe {
        combine_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            a.arg_of::<R, E>(client),
            b_buf.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            scale,
            b.is_some(),
            clamp_unit,
        );
    }
}

#[cube(launch_unchecked)]
fn fill_kernel<F: Float>(out: &mut Array<F>, value: f32) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        out[i] = F::cast_from(value);
    }
}

/// Sets every element of `out` to `value`.
pub fn fill<R: Runtime, E: Element>(client: &ComputeClient<R>, out: &DeviceBuffer, value: f32) {
    if out.is_empty() {
        return;
    }
    // SAFETY: one write per index below `out.len()`.
    unsafe {
        fill_kernel::launch_unchecked::<E, R>(client, cube_count(client, out.len()), cube_dim(), out.arg_of::<R, E>(client), value);
    }
}

/// CPU reference of [`combine`].
pub fn combine_reference(a: &[f32], b: Option<(&[f32], f32)>, clamp_unit: bool) -> Vec<f64> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| {
            let mut v = f64::from(x);
            if let Some((b, s)) = b {
                v += f64::from(s) * f64::from(b[i]);
            }
            if clamp_unit { v.clamp(0.0, 1.0) } else { v }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, has_f16, poisoned, read_as_f32, rounded};

    #[test]
    fn matches_reference() {
        check::<f32>(1e-6);
        if has_f16() {
            check::<half::f16>(1e-2);
        }
    }

    fn check<E: Element>(tolerance: f64) {
        let client = client();
        let mut rng = Rng::new(81);
        for case in 0..4 {
            let n = rng.range(1, 3000);
            let a = rounded::<E>(rng.vec_f32(n, -1.0, 2.0));
            let b = rounded::<E>(rng.vec_f32(n, -1.0, 2.0));
            let (with_b, clamp_unit) = (case % 2 == 0, case / 2 == 1);
            let up = |v: &[f32]| DeviceBuffer::from_f32_as::<_, E>(&client, v);
            let (ab, bb) = (up(&a), up(&b));
            let out = poisoned::<E>(&client, n);
            combine::<_, E>(&client, &ab, with_b.then_some((&bb, 0.2)), clamp_unit, &out);
            let want = combine_reference(&a, with_b.then_some((&b[..], 0.2)), clamp_unit);
            assert_close(&read_as_f32::<E>(&client, out.handle().clone()), &want, tolerance, &format!("case {case}"));
            fill::<_, E>(&client, &out, 0.25);
            assert!(read_as_f32::<E>(&client, out.handle().clone()).iter().all(|&v| v == 0.25), "fill");
        }
    }
}
