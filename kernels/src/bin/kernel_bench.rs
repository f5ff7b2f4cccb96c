//! Times each kernel on the default device and prints a table.
//!
//! `cargo run --release -p framestream-kernels --bin kernel_bench [-- --filter NAME]`
//! (with `--features cuda --no-default-features` on a CUDA machine; set `KERNEL_BENCH_CUDA=1`
//! there). Sizes are those of a 1280×720 RGB pipeline with chunks of 8 frames.

use std::time::Instant;

use cubecl::prelude::*;
use framestream_kernels::DeviceBuffer;
use framestream_kernels::pattern::{PatternParams, pattern};
use framestream_kernels::planes::{PlaneFormat, planes};
use framestream_kernels::resize::{Filter, ResizePlan, resize};
use framestream_kernels::rgb8::{rgb8, rgb8_words};
use framestream_kernels::unpack::{PackedFormat, unpack};

struct Row {
    name: String,
    ms: f64,
    bytes: f64,
}

/// Runs `f` once to warm up, then enough times to fill about a second; milliseconds per run.
fn time<R: Runtime>(client: &ComputeClient<R>, mut f: impl FnMut()) -> f64 {
    f();
    cubecl::future::block_on(client.sync()).expect("device");
    let mut runs = 0;
    let start = Instant::now();
    while runs < 3 || (start.elapsed().as_secs_f64() < 1.0 && runs < 1000) {
        f();
        runs += 1;
        if runs % 4 == 0 {
            cubecl::future::block_on(client.sync()).expect("device");
        }
    }
    cubecl::future::block_on(client.sync()).expect("device");
    start.elapsed().as_secs_f64() * 1000.0 / runs as f64
}

fn bench<R: Runtime>(client: &ComputeClient<R>, filter: Option<&str>) -> Vec<Row> {
    let (frames, h, w, c) = (8usize, 720usize, 1280usize, 3usize);
    let values = frames * h * w * c;
    let f32s = |n: usize| (n * 4) as f64;
    let frames_in = DeviceBuffer::from_f32(client, &vec![0.5; values]);
    let mut rows = Vec::new();
    let mut run = |name: &str, bytes: f64, f: &mut dyn FnMut()| {
        if filter.is_none_or(|pat| name.contains(pat)) {
            let ms = time(client, f);
            rows.push(Row { name: name.into(), ms, bytes });
        }
    };

    let params = PatternParams { width: w as u32, height: h as u32, seed: 1 };
    let out = DeviceBuffer::empty_f32(client, values);
    run("pattern 8x1280x720", f32s(values), &mut || pattern(client, &params, 0, frames, &out));

    for filter in [Filter::Bicubic, Filter::Lanczos3] {
        let (ih, iw) = (h / 2, w / 2);
        let input = DeviceBuffer::from_f32(client, &vec![0.5; frames * ih * iw * c]);
        let plan = ResizePlan::new(client, (ih, iw), (h, w), c, filter, frames);
        let out = DeviceBuffer::empty_f32(client, plan.output_len(frames));
        let bytes = f32s(frames * ih * iw * c + frames * ih * w * c * 2 + values);
        let name = format!("resize {filter:?} 640x360 -> 1280x720 x8");
        run(&name, bytes, &mut || resize(client, &plan, &input, frames, &out));
    }

    for (label, format) in [("yuv420p", PlaneFormat::YUV420P), ("yuv444p10", PlaneFormat::YUV444P10)] {
        let out = DeviceBuffer::empty_u32(client, format.words(frames, w, h));
        let flags = DeviceBuffer::from_u32(client, &vec![0; frames]);
        let bytes = f32s(values) + (out.len * 4) as f64;
        let name = format!("planes {label} 8x1280x720");
        run(&name, bytes, &mut || planes(client, &frames_in, (frames, h, w, c), format, &out, &flags));
    }

    let pixels = frames * h * w;
    let words = DeviceBuffer::empty_u32(client, rgb8_words(pixels));
    run("rgb8 8x1280x720", f32s(values) + (pixels * 3) as f64, &mut || {
        rgb8(client, &frames_in, pixels, c, &words)
    });

    let packed = PackedFormat { channels: 3, bytes_per_sample: 1, quarter_turns: 0 };
    let bytes_in = DeviceBuffer::from_u32(client, &vec![0x8080_8080; (pixels * 3).div_ceil(4)]);
    let out = DeviceBuffer::empty_f32(client, values);
    run("unpack rgb24 8x1280x720", (pixels * 3) as f64 + f32s(values), &mut || {
        unpack(client, &bytes_in, (frames, h, w), packed, &out)
    });
    rows
}

fn main() {
    let mut filter = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--filter" => filter = args.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    #[cfg(feature = "cuda")]
    let rows = {
        let client = cubecl::cuda::CudaRuntime::client(&Default::default());
        println!("device: CUDA 0");
        bench(&client, filter.as_deref())
    };
    #[cfg(all(not(feature = "cuda"), feature = "wgpu"))]
    let rows = {
        let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
        println!("device: wgpu default adapter");
        bench(&client, filter.as_deref())
    };
    println!();
    println!("| kernel | ms | GB/s (bytes read + written once) |");
    println!("|---|---:|---:|");
    for r in rows {
        println!("| {} | {:.2} | {:.1} |", r.name, r.ms, r.bytes / r.ms / 1e6);
    }
}
