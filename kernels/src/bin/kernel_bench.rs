//! Times the kernels on the default device and prints tables.
//!
//! `cargo run --release -p framestream-kernels --bin kernel_bench -- [--suite io|conv|all]
//!  [--dtype f32|f16|bf16] [--strategy tiled|direct|both] [--filter NAME]
//!  [--peak-tflops T --peak-gbs G] [--frames N]`
//!
//! Built with `--no-default-features --features cuda` it runs on CUDA device 0 (it links no
//! FFmpeg, so the binary can be carried to a GPU machine). `io` covers the video kernels at
//! 1280×720 × 8 frames; `conv` the 3×3×3 convolutions of the LTX decoder (768×512 output) and
//! the 3×3 convolutions of RRDBNet on 512×512 tiles, with the least time the device's peak
//! compute and bandwidth allow beside each.

use std::time::Instant;

use cubecl::prelude::*;
use framestream_kernels::conv::{Activation, ConvInput, ConvOutput, ConvWeights, Padding, Sequence, Strategy, conv};
use framestream_kernels::pattern::{PatternParams, pattern};
use framestream_kernels::planes::{PlaneFormat, planes};
use framestream_kernels::resize::{Filter, ResizePlan, resize};
use framestream_kernels::rgb8::{rgb8, rgb8_words};
use framestream_kernels::unpack::{PackedFormat, unpack};
use framestream_kernels::{DeviceBuffer, Element};

struct Options {
    suite: String,
    dtype: String,
    filter: Option<String>,
    peak_tflops: f64,
    peak_gbs: f64,
    frames: usize,
    strategies: Vec<Strategy>,
}

struct Row {
    name: String,
    ms: f64,
    flops: f64,
    bytes: f64,
}

/// Warm-up, then runs until a second has passed (at least twice); milliseconds per run.
fn time<R: Runtime>(client: &ComputeClient<R>, mut f: impl FnMut()) -> f64 {
    f();
    cubecl::future::block_on(client.sync()).expect("device");
    let mut runs = 0;
    let start = Instant::now();
    while runs < 2 || (start.elapsed().as_secs_f64() < 1.0 && runs < 1000) {
        f();
        runs += 1;
        cubecl::future::block_on(client.sync()).expect("device");
    }
    start.elapsed().as_secs_f64() * 1000.0 / runs as f64
}

fn wanted(options: &Options, name: &str) -> bool {
    options.filter.as_deref().is_none_or(|pattern| name.contains(pattern))
}

fn io_suite<R: Runtime>(client: &ComputeClient<R>, options: &Options) {
    let (frames, h, w, c) = (8usize, 720usize, 1280usize, 3usize);
    let values = frames * h * w * c;
    let f32s = |n: usize| (n * 4) as f64;
    let frames_in = DeviceBuffer::from_f32(client, &vec![0.5; values]);
    let run = |name: String, bytes: f64, f: &mut dyn FnMut()| {
        if wanted(options, &name) {
            print_row(&Row { ms: time(client, f), name, flops: 0.0, bytes }, options);
        }
    };

    let params = PatternParams { width: w as u32, height: h as u32, seed: 1 };
    let out = DeviceBuffer::empty_f32(client, values);
    run("pattern 8x1280x720".into(), f32s(values), &mut || pattern(client, &params, 0, frames, &out));

    for filter in [Filter::Bicubic, Filter::Lanczos3] {
        let (ih, iw) = (h / 2, w / 2);
        let input = DeviceBuffer::from_f32(client, &vec![0.5; frames * ih * iw * c]);
        let plan = ResizePlan::new(client, (ih, iw), (h, w), c, filter, frames);
        let out = DeviceBuffer::empty_f32(client, plan.output_len(frames));
        let bytes = f32s(frames * ih * iw * c + frames * ih * w * c * 2 + values);
        let name = format!("resize {filter:?} 640x360 -> 1280x720 x8");
        run(name, bytes, &mut || resize(client, &plan, &input, frames, &out));
    }

    for (label, format) in [("yuv420p", PlaneFormat::YUV420P), ("yuv444p10", PlaneFormat::YUV444P10)] {
        let out = DeviceBuffer::empty_u32(client, format.words(frames, w, h));
        let flags = DeviceBuffer::from_u32(client, &vec![0; frames]);
        let bytes = f32s(values) + (out.len() * 4) as f64;
        let name = format!("planes {label} 8x1280x720");
        run(name, bytes, &mut || planes(client, &frames_in, (frames, h, w, c), format, &out, &flags));
    }

    let pixels = frames * h * w;
    let words = DeviceBuffer::empty_u32(client, rgb8_words(pixels));
    run("rgb8 8x1280x720".into(), f32s(values) + (pixels * 3) as f64, &mut || {
        rgb8(client, &frames_in, pixels, c, &words)
    });

    let packed = PackedFormat { channels: 3, bytes_per_sample: 1, quarter_turns: 0 };
    let bytes_in = DeviceBuffer::from_u32(client, &vec![0x8080_8080; (pixels * 3).div_ceil(4)]);
    let out = DeviceBuffer::empty_f32(client, values);
    run("unpack rgb24 8x1280x720".into(), (pixels * 3) as f64 + f32s(values), &mut || {
        unpack(client, &bytes_in, (frames, h, w), packed, &out)
    });
}

/// One convolution layer: `cin → cout` at `h × w`, `kt × k × k`, `frames` output frames.
struct ConvShape {
    name: &'static str,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kt: usize,
    k: usize,
}

/// The 3×3×3 layers of the LTX-Video v2 decoder for 768×512 frames (latent 24×16), and the
/// 3×3 layers of an RRDBNet block on a 512×512 tile (64 features, growth 32).
const SHAPES: [ConvShape; 14] = [
    ConvShape { name: "ltx res 1024 @16x24", cin: 1024, cout: 1024, h: 16, w: 24, kt: 3, k: 3 },
    ConvShape { name: "ltx d2s 1024->4096 @16x24", cin: 1024, cout: 4096, h: 16, w: 24, kt: 3, k: 3 },
    ConvShape { name: "ltx res 512 @32x48", cin: 512, cout: 512, h: 32, w: 48, kt: 3, k: 3 },
    ConvShape { name: "ltx d2s 512->2048 @32x48", cin: 512, cout: 2048, h: 32, w: 48, kt: 3, k: 3 },
    ConvShape { name: "ltx res 256 @64x96", cin: 256, cout: 256, h: 64, w: 96, kt: 3, k: 3 },
    ConvShape { name: "ltx d2s 256->1024 @64x96", cin: 256, cout: 1024, h: 64, w: 96, kt: 3, k: 3 },
    ConvShape { name: "ltx res 128 @128x192", cin: 128, cout: 128, h: 128, w: 192, kt: 3, k: 3 },
    ConvShape { name: "ltx out 128->48 @128x192", cin: 128, cout: 48, h: 128, w: 192, kt: 3, k: 3 },
    ConvShape { name: "rrdb 64->32 @512x512", cin: 64, cout: 32, h: 512, w: 512, kt: 1, k: 3 },
    ConvShape { name: "rrdb 96->32 @512x512", cin: 96, cout: 32, h: 512, w: 512, kt: 1, k: 3 },
    ConvShape { name: "rrdb 128->32 @512x512", cin: 128, cout: 32, h: 512, w: 512, kt: 1, k: 3 },
    ConvShape { name: "rrdb 160->32 @512x512", cin: 160, cout: 32, h: 512, w: 512, kt: 1, k: 3 },
    ConvShape { name: "rrdb 192->64 @512x512", cin: 192, cout: 64, h: 512, w: 512, kt: 1, k: 3 },
    ConvShape { name: "rrdb 64->64 @512x512", cin: 64, cout: 64, h: 512, w: 512, kt: 1, k: 3 },
];

fn conv_suite<R: Runtime, E: Element>(client: &ComputeClient<R>, options: &Options) {
    let elem = size_of::<E>() as f64;
    for s in &SHAPES {
        if !wanted(options, s.name) {
            continue;
        }
        // LTX layers run on `frames` frames with their 2-frame halo; RRDB on one tile.
        let out_frames = if s.kt == 3 { options.frames } else { 1 };
        let in_frames = out_frames + s.kt - 1;
        let largest = (in_frames * s.cin).max(out_frames * s.cout) * s.h * s.w * size_of::<E>();
        if largest as u64 > client.properties().memory.max_page_size {
            println!("| {} | skipped: a {:.0} MiB buffer is over the device's limit |", s.name, largest as f64 / 1048576.0);
            continue;
        }
        let input = DeviceBuffer::from_f32_as::<R, E>(client, &vec![0.25; in_frames * s.h * s.w * s.cin]);
        let weights = ConvWeights::upload::<R, E>(
            client,
            &vec![0.01; s.cout * s.cin * s.kt * s.k * s.k],
            Some(&vec![0.0; s.cout]),
            None,
            (s.cout, s.cin, s.kt, s.k),
        );
        let out = DeviceBuffer::empty::<R, E>(client, out_frames * s.h * s.w * s.cout);
        let conv_input = ConvInput {
            head: None,
            body: &input,
            sequence: Sequence::plain(in_frames),
            height: s.h,
            width: s.w,
            stride: s.cin,
        };
        let conv_output = ConvOutput {
            out: &out,
            stride: s.cout,
            offset: 0,
            activation: Activation::None,
            residual: None,
        };
        let pixels = (out_frames * s.h * s.w) as f64;
        let flops = 2.0 * pixels * (s.cin * s.cout * s.kt * s.k * s.k) as f64;
        let bytes = elem
            * ((in_frames * s.h * s.w * s.cin) as f64
                + (s.cin * s.cout * s.kt * s.k * s.k) as f64
                + pixels * s.cout as f64);
        for strategy in &options.strategies {
            let ms = time(client, || {
                conv::<R, E>(client, &weights, &conv_input, &conv_output, Padding::Zeros, *strategy)
            });
            let name = format!("{} x{out_frames} {strategy:?}", s.name);
            print_row(&Row { name, ms, flops, bytes }, options);
        }
    }
}

fn print_row(r: &Row, options: &Options) {
    let least = (r.flops / (options.peak_tflops * 1e9)).max(r.bytes / (options.peak_gbs * 1e6));
    let gflops = if r.flops > 0.0 { format!("{:.1}", r.flops / r.ms / 1e6) } else { "-".into() };
    println!(
        "| {} | {:.2} | {gflops} | {:.1} | {least:.3} | {:.1} % |",
        r.name,
        r.ms,
        r.bytes / r.ms / 1e6,
        100.0 * least / r.ms
    );
}

fn run<R: Runtime>(client: &ComputeClient<R>, options: &Options) {
    println!(
        "peaks assumed for the least time: {} TFLOP/s, {} GB/s; convolutions in {}",
        options.peak_tflops, options.peak_gbs, options.dtype
    );
    println!();
    println!("| kernel | ms | GFLOP/s | GB/s (each byte once) | least ms | of peak |");
    println!("|---|---:|---:|---:|---:|---:|");
    if matches!(options.suite.as_str(), "io" | "all") {
        io_suite(client, options);
    }
    if matches!(options.suite.as_str(), "conv" | "all") {
        match options.dtype.as_str() {
            "f32" => conv_suite::<R, f32>(client, options),
            "f16" => conv_suite::<R, half::f16>(client, options),
            "bf16" => conv_suite::<R, half::bf16>(client, options),
            other => panic!("unknown dtype {other}"),
        }
    }
}

fn main() {
    let mut options = Options {
        suite: "all".into(),
        dtype: "f32".into(),
        filter: None,
        // H100 SXM, dense fp32 without tensor cores, and HBM3.
        peak_tflops: 67.0,
        peak_gbs: 3350.0,
        frames: 4,
        strategies: vec![Strategy::Tiled, Strategy::Direct],
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--suite" => options.suite = value(),
            "--dtype" => options.dtype = value(),
            "--filter" => options.filter = Some(value()),
            "--peak-tflops" => options.peak_tflops = value().parse().expect("a number"),
            "--peak-gbs" => options.peak_gbs = value().parse().expect("a number"),
            "--frames" => options.frames = value().parse().expect("a number"),
            "--strategy" => {
                options.strategies = match value().as_str() {
                    "tiled" => vec![Strategy::Tiled],
                    "direct" => vec![Strategy::Direct],
                    _ => vec![Strategy::Tiled, Strategy::Direct],
                }
            }
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    #[cfg(feature = "cuda")]
    {
        let client = cubecl::cuda::CudaRuntime::client(&Default::default());
        println!("device: CUDA 0");
        run(&client, &options);
    }
    #[cfg(all(not(feature = "cuda"), feature = "wgpu"))]
    {
        let client = cubecl::wgpu::WgpuRuntime::client(&Default::default());
        println!("device: wgpu default adapter");
        run(&client, &options);
    }
}
