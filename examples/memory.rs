//! Peak memory of pattern → resize ×2 → drain, for two video lengths.
//!
//! `cargo run --release --example memory [-- --size 640x360 --frames 100,1000 --chunk-frames 8]`
//!
//! Each length runs in a fresh child process so its peak RSS (VmHWM) is its own. On lavapipe
//! device memory is host memory, so the RSS includes the device's buffers.

mod common;

use std::time::Instant;

use framestream::prelude::*;

struct Args {
    size: FrameSize,
    frames: Vec<u64>,
    chunk_frames: usize,
    child: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        size: "640x360".parse().unwrap(),
        frames: vec![100, 1000],
        chunk_frames: 8,
        child: false,
    };
    common::parse_flags(|flag, value| {
        match flag {
            "--size" => args.size = common::parsed(flag, &value()),
            "--frames" => args.frames = common::list(flag, &value()),
            "--chunk-frames" => args.chunk_frames = common::parsed(flag, &value()),
            "--child" => args.child = true,
            _ => return false,
        }
        true
    });
    args
}

/// Runs one length and prints `frames seconds peak_kib reserved_bytes`.
fn child(args: &Args) -> Result<()> {
    let frames = args.frames[0];
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    runtime.block_on(async {
        let device = Device::from_env()?;
        let video = TestPattern::new(args.size.width, args.size.height, frames)?
            .resize(2.0, Filter::Lanczos3);
        let request = OpenRequest::new(&device).with_chunk_frames(args.chunk_frames);
        let start = Instant::now();
        let report = drain(&video, &request).await?;
        let reserved = request.device().memory_usage()?.bytes_reserved;
        println!(
            "{} {:.3} {} {}",
            report.frames,
            start.elapsed().as_secs_f64(),
            common::peak_rss_kib(),
            reserved
        );
        Ok(())
    })
}

fn main() {
    let args = parse_args();
    common::run_if_child(args.child, || child(&args));
    let device = Device::from_env().expect("a device");
    let (w, h) = (args.size.width, args.size.height);
    println!("pattern {w}x{h} -> resize x2 (lanczos) -> drain, chunk {} frames", args.chunk_frames);
    println!("device: {}", device.info());
    println!();
    println!("| frames | time (s) | frames/s | peak RSS (MiB) | device reserved (MiB) | whole output as f32 (MiB) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut peaks = Vec::new();
    for &frames in &args.frames {
        let v = common::run_child(&[
            ("--size", args.size.to_string()),
            ("--frames", frames.to_string()),
            ("--chunk-frames", args.chunk_frames.to_string()),
        ]);
        let whole = frames as f64 * (4 * w * h * 3 * 4) as f64 / (1 << 20) as f64;
        println!(
            "| {frames} | {:.2} | {:.1} | {:.1} | {:.1} | {whole:.0} |",
            v[1],
            v[0] / v[1],
            v[2] / 1024.0,
            v[3] / (1 << 20) as f64
        );
        peaks.push(v[2]);
    }
    println!();
    println!("peak RSS spread: {:.1} % (target < 10 %)", common::spread_percent(&peaks));
}
