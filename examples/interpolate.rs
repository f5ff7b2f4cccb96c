//! Frame interpolation speed: interpolated frames/s of RIFE ×2 with released layouts and
//! widths (random weights) on the default device.
//!
//! `cargo run --release --example interpolate -- [--layout 4.6,4.18,4.26] [--size 320x180]
//! [--frames 3] [--precision f32] [--scale 1]`
//!
//! `--frames` input frames (so one fewer interpolated) of the test pattern, in one chunk;
//! every input frame is padded and encoded once, every pair interpolated once. The time is the
//! whole stream's (pattern rendering and the input frames' copies included), after a warm-up
//! run. `tools/bench_torch_models.py rife` prints PyTorch's on the same shapes.

mod common;

use std::time::Instant;

use framestream::model::rife::{RifeConfig, RifeModel};
use framestream::prelude::*;

fn main() {
    let mut layouts = vec!["4.6".to_string(), "4.18".into(), "4.26".into()];
    let mut size: FrameSize = "320x180".parse().unwrap();
    let mut frames = 3u64;
    let mut precision = framestream::model::Precision::F32;
    let mut scale = 1.0f64;
    common::parse_flags(|flag, value| {
        match flag {
            "--layout" => layouts = common::list(flag, &value()),
            "--size" => size = common::parsed(flag, &value()),
            "--frames" => frames = common::parsed(flag, &value()),
            "--precision" => precision = common::parsed(flag, &value()),
            "--scale" => scale = common::parsed(flag, &value()),
            _ => return false,
        }
        true
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let device = Device::from_env().expect("a device");
    println!("device: {}", device.info());
    println!("{size} ×2, {frames} input frames in one chunk, pyramid scale {scale}, {precision}");
    println!();
    println!("| layout | parameters | size | precision | interpolated frames/s | s/frame | planned MiB |");
    println!("|---|---:|---|---|---:|---:|---:|");
    for layout in layouts {
        let config = RifeConfig::released(&layout).unwrap_or_else(|| panic!("--layout {layout}: 4.6, 4.18, 4.22 or 4.26"));
        let tensors = config.tensors();
        let params: usize = tensors.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        // Uniform weights of variance 1/fan-in, ResConv β near 1, small biases.
        let file = common::random_checkpoint(&format!("rife-{layout}.safetensors"), &tensors, None, |name, u, fan_in| {
            let centred = 2.0 * u - 1.0;
            if name.ends_with(".beta") {
                0.5 + u
            } else if name.ends_with(".bias") {
                0.05 * centred
            } else {
                centred * (3.0 / fan_in as f32).sqrt()
            }
        });
        let model = RifeModel::from_weights(&file).unwrap();
        let stage = Interpolate::rife(model.clone()).scale(scale).precision(precision);
        let video = TestPattern::new(size.width, size.height, frames).unwrap().pipe(stage);
        let request = OpenRequest::new(&device).with_chunk_frames(2 * frames as usize);
        let elapsed = runtime.block_on(async {
            // One warm-up run compiles the kernels.
            drain(&video, &request).await.unwrap();
            let start = Instant::now();
            drain(&video, &request).await.unwrap();
            start.elapsed().as_secs_f64()
        });
        let planned = model.on_in(&device, precision).unwrap().planned_bytes(
            (size.height.next_multiple_of(model.size_multiple(scale)), size.width.next_multiple_of(model.size_multiple(scale))),
            scale,
        );
        let fps = (frames - 1) as f64 / elapsed;
        let scaled = if scale == 1.0 { String::new() } else { format!(" (scale {scale})") };
        let mib = planned as f64 / (1 << 20) as f64;
        println!("| {layout} | {params} | {size}{scaled} | {precision} | {fps:.3} | {:.3} | {mib:.1} |", 1.0 / fps);
    }
}
