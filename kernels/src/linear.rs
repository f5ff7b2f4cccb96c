//! A small dense layer, `out = act(in · Wᵀ + b)` with PyTorch's `[out, in]` weights: the
//! timestep-embedding MLP runs once per stream, so this is one thread per output value.

use cubecl::prelude::*;

use crate::{DeviceBuffer, Element};
use crate::launch::{cube_count, cube_dim, product};

#[cube(launch_unchecked)]
fn linear_kernel<F: Float>(
    input: &Array<F>,
    weight: &Array<F>,
    bias: &Array<F>,
    output: &mut Array<F>,
    inputs: u32,
    outputs: u32,
    #[comptime] silu: bool,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let n = (o % outputs as usize) as u32;
        let row = (o / outputs as usize) as u32;
        let mut acc = f32::cast_from(bias[n as usize]);
        for k in 0..inputs {
            let x = f32::cast_from(input[(row * inputs + k) as usize]);
            acc += x * f32::cast_from(weight[(n * inputs + k) as usize]);
        }
        if comptime!(silu) {
            acc = acc / (1.0f32 + f32::exp(0.0f32 - acc));
        }
        output[o] = F::cast_from(acc);
    }
}

/// `rows` input rows of `inputs` values → `rows × outputs`, SiLU applied when asked.
pub fn linear<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (weight, bias): (&DeviceBuffer, &DeviceBuffer),
    (rows, inputs, outputs): (usize, usize, usize),
    silu: bool,
    out: &DeviceBuffer,
) {
    assert_eq!(input.len(), product(&[rows, inputs], "linear input"), "linear input size");
    assert_eq!(weight.len(), product(&[outputs, inputs], "linear weight"), "linear weight size");
    assert_eq!(bias.len(), outputs, "linear bias size");
    assert_eq!(out.len(), product(&[rows, outputs], "linear output"), "linear output size");
    if out.is_empty() {
        return;
    }
    // SAFETY: reads below `rows × inputs` and `outputs × inputs`, one write per output.
    unsafe {
        linear_kernel::launch_unchecked::<E, R>(
            client,
            cube_count(client, out.len()),
            cube_dim(),
            input.arg_of::<R, E>(client),
            weight.arg_of::<R, E>(client),
            bias.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            inputs as u32,
            outputs as u32,
            silu,
        );
    }
}

/// CPU reference of [`linear`].
pub fn linear_reference(input: &[f32], weight: &[f32], bias: &[f32], inputs: usize, silu: bool) -> Vec<f64> {
    let outputs = bias.len();
    input
        .chunks(inputs)
        .flat_map(|row| {
            (0..outputs).map(move |n| {
                let mut acc = f64::from(bias[n]);
                for (k, &v) in row.iter().enumerate() {
                    acc += f64::from(v) * f64::from(weight[n * inputs + k]);
                }
                if silu { acc / (1.0 + (-acc).exp()) } else { acc }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, has_f16, poisoned, read_as_f32, rounded};

    #[test]
    fn matches_reference() {
        check::<f32>(1e-5);
        if has_f16() {
            check::<half::f16>(1e-2);
        }
    }

    fn check<E: Element>(tolerance: f64) {
        let client = client();
        let mut rng = Rng::new(71);
        for case in 0..6 {
            let (rows, inputs, outputs) = (rng.range(1, 3), rng.range(1, 300), rng.range(1, 300));
            let x = rounded::<E>(rng.vec_f32(rows * inputs, -1.0, 1.0));
            let w = rounded::<E>(rng.vec_f32(outputs * inputs, -0.1, 0.1));
            let b = rounded::<E>(rng.vec_f32(outputs, -0.5, 0.5));
            let silu = case % 2 == 1;
            let out = poisoned::<E>(&client, rows * outputs);
            let upload = |v: &[f32]| DeviceBuffer::from_f32_as::<_, E>(&client, v);
            let (xb, wb, bb) = (upload(&x), upload(&w), upload(&b));
            linear::<_, E>(&client, &xb, (&wb, &bb), (rows, inputs, outputs), silu, &out);
            let want = linear_reference(&x, &w, &b, inputs, silu);
            assert_close(&read_as_f32::<E>(&client, out.handle().clone()), &want, tolerance, &format!("case {case}"));
        }
    }
}
