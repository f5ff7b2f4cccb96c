//! A stage with your own GPU kernel: a colour grade (saturation around Rec. 709 luma, then
//! lift and gain) written with CubeCL, run on the pipeline's device stream through
//! `Chunk::launch`, and checked against the same grade computed on the CPU.
//!
//! ```sh
//! cargo run --release --example custom_stage
//! ```

use framestream::kernel::cubecl::prelude::*;
use framestream::kernel::{FrameKernel, KernelArgs};
use framestream::prelude::*;

#[cube(launch)]
fn grade_kernel(input: &Array<f32>, output: &mut Array<f32>, saturation: f32, lift: f32, gain: f32, pixels: usize) {
    let p = ABSOLUTE_POS;
    if p < pixels {
        let (r, g, b) = (input[p * 3], input[p * 3 + 1], input[p * 3 + 2]);
        let luma = 0.2126f32 * r + 0.7152f32 * g + 0.0722f32 * b;
        output[p * 3] = clamp(lift + gain * (luma + saturation * (r - luma)), 0.0f32, 1.0f32);
        output[p * 3 + 1] = clamp(lift + gain * (luma + saturation * (g - luma)), 0.0f32, 1.0f32);
        output[p * 3 + 2] = clamp(lift + gain * (luma + saturation * (b - luma)), 0.0f32, 1.0f32);
    }
}

/// The grade's settings; the kernel launcher of the stage.
#[derive(Clone, Copy)]
struct Grade {
    saturation: f32,
    lift: f32,
    gain: f32,
}

impl FrameKernel for Grade {
    fn launch<R: Runtime>(&self, args: KernelArgs<'_, R>) -> framestream::Result<()> {
        let [frames, height, width, _] = args.input_shape;
        let pixels = frames * height * width;
        let (count, dim) = args.grid(pixels);
        grade_kernel::launch(
            args.client,
            count,
            dim,
            args.input(),
            args.output(),
            self.saturation,
            self.lift,
            self.gain,
            pixels,
        );
        Ok(())
    }
}

impl Grade {
    /// The same grade on the CPU, in f64.
    fn reference(&self, rgb: &[f32]) -> Vec<f32> {
        let (s, l, g) = (f64::from(self.saturation), f64::from(self.lift), f64::from(self.gain));
        rgb.chunks_exact(3)
            .flat_map(|p| {
                let [r, gr, b] = [p[0], p[1], p[2]].map(f64::from);
                let luma = 0.2126 * r + 0.7152 * gr + 0.0722 * b;
                [r, gr, b].map(move |c| (l + g * (luma + s * (c - luma))).clamp(0.0, 1.0) as f32)
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let device = Device::from_env()?;
    let grade = Grade { saturation: 1.3, lift: 0.02, gain: 0.95 };
    let source = TestPattern::new(160, 90, 30)?.seed(11);
    let graded = source.clone().map("grade", move |chunk| {
        let [_, height, width, channels] = chunk.shape();
        chunk.launch(&grade, [height, width, channels])
    });
    let request = OpenRequest::new(&device).with_chunk_frames(8);
    let original = collect(&source, &request, 100).await?.to_host().await?;
    let got = collect(&graded, &request, 100).await?.to_host().await?;
    let want = grade.reference(&original.data);
    let worst = got.data.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    let on = &device.info().adapter;
    println!("graded {} frames of 160x90 on {on}: largest difference from the CPU {worst:.2e}", got.shape[0]);
    if got.data.len() != want.len() || worst > 1e-5 {
        return Err(Error::InvalidConfig(format!("the GPU grade differs from the CPU by {worst}")));
    }
    Ok(())
}
