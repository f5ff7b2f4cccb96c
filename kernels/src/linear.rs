//! A small dense layer, `out = act(in · Wᵀ + b)` with PyTorch's `[out, in]` weights: the
//! timestep-embedding MLP runs once per stream, so this is one thread per output value.

use cubecl::prelude::*;

use crate::DeviceBuffer;
use crate::launch::{cube_count, cube_dim};

#[cube(launch_unchecked)]
fn linear_kernel(
    input: &Array<f32>,
    weight: &Array<f32>,
    bias: &Array<f32>,
    output: &mut Array<f32>,
    inputs: u32,
    outputs: u32,
    #[comptime] silu: bool,
) {
    let o = ABSOLUTE_POS;
    if o < output.len() {
        let n = (o % outputs as usize) as u32;
        let row = (o / outputs as usize) as u32;
        let mut acc = bias[n as usize];
        for k in 0..inputs {
            acc += input[(row * inputs + k) as usize] * weight[(n * inputs + k) as usize];
        }
        if comptime!(silu) {
            acc = acc / (1.0f32 + f32::exp(0.0f32 - acc));
        }
        output[o] = acc;
    }
}

/// `rows` input rows of `inputs` values → `rows × outputs`, SiLU applied when asked.
pub fn linear<R: Runtime>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    (weight, bias): (&DeviceBuffer, &DeviceBuffer),
    (rows, inputs, outputs): (usize, usize, usize),
    silu: bool,
    out: &DeviceBuffer,
) {
    assert_eq!(input.len, rows * inputs, "linear input size");
    assert_eq!(weight.len, outputs * inputs, "linear weight size");
    assert_eq!(bias.len, outputs, "linear bias size");
    assert_eq!(out.len, rows * outputs, "linear output size");
    if out.len == 0 {
        return;
    }
    // SAFETY: reads below `rows × inputs` and `outputs × inputs`, one write per output.
    unsafe {
        linear_kernel::launch_unchecked(
            client,
            cube_count(client, out.len),
            cube_dim(),
            input.arg(),
            weight.arg(),
            bias.arg(),
            out.arg(),
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
    use crate::test_util::{Rng, assert_close, client, poisoned_f32, read_f32};

    #[test]
    fn matches_reference() {
        let client = client();
        let mut rng = Rng::new(71);
        for case in 0..6 {
            let (rows, inputs, outputs) = (rng.range(1, 3), rng.range(1, 300), rng.range(1, 300));
            let x = rng.vec_f32(rows * inputs, -1.0, 1.0);
            let w = rng.vec_f32(outputs * inputs, -0.1, 0.1);
            let b = rng.vec_f32(outputs, -0.5, 0.5);
            let silu = case % 2 == 1;
            let out = poisoned_f32(&client, rows * outputs);
            let (xb, wb, bb) = (
                DeviceBuffer::from_f32(&client, &x),
                DeviceBuffer::from_f32(&client, &w),
                DeviceBuffer::from_f32(&client, &b),
            );
            linear(&client, &xb, (&wb, &bb), (rows, inputs, outputs), silu, &out);
            let want = linear_reference(&x, &w, &b, inputs, silu);
            assert_close(&read_f32(&client, out.handle), &want, 1e-5, &format!("case {case}"));
        }
    }
}
