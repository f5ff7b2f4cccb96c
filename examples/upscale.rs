//! Model upscaling speed: frames/s of realistic ESRGAN-family networks (random weights) on the
//! default device.
//!
//! `cargo run --release --example upscale -- [--size 320x180] [--frames 4] [--rrdb-blocks 23]
//! [--compact 16,32] [--tile 128] [--precision f16]`
//!
//! Models: SRVGGNetCompact with 16 and 32 convolutions (realesr-animevideov3 and
//! realesr-general-x4v3 shapes; `--compact` picks, `--compact 0` none) and RRDBNet ×4 with
//! `--rrdb-blocks` blocks (23 is x4plus; 0 skips it). Whole frames unless `--tile` (halo
//! tiles of that many input pixels), chunks of `--frames`, activations in `--precision`.

mod common;

use std::time::Instant;

use framestream::model::esrgan::UpscaleModel;
use framestream::model::save_safetensors;
use framestream::prelude::*;

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Deterministic weights of the right scale (so activations stay finite).
fn tensor(name: String, shape: Vec<usize>, seed: &mut u64) -> (String, Vec<usize>, Vec<f32>) {
    let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
    let scale = (1.0 / fan_in as f64).sqrt() as f32;
    let values = (0..shape.iter().product::<usize>())
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect();
    (name, shape, values)
}

fn compact(convs: usize, seed: &mut u64) -> Tensors {
    let nf = 64;
    let mut t = vec![tensor("body.0.weight".into(), vec![nf, 3, 3, 3], seed), tensor("body.0.bias".into(), vec![nf], seed)];
    for k in 0..=convs {
        if k > 0 {
            t.push(tensor(format!("body.{}.weight", 2 * k), vec![nf, nf, 3, 3], seed));
            t.push(tensor(format!("body.{}.bias", 2 * k), vec![nf], seed));
        }
        t.push((format!("body.{}.weight", 2 * k + 1), vec![nf], vec![0.25; nf]));
    }
    let last = 2 * convs + 2;
    t.push(tensor(format!("body.{last}.weight"), vec![48, nf, 3, 3], seed));
    t.push(tensor(format!("body.{last}.bias"), vec![48], seed));
    t
}

fn rrdb(blocks: usize, seed: &mut u64) -> Tensors {
    let (nf, gc) = (64, 32);
    let mut convs = vec![("conv_first".to_string(), nf, 3), ("conv_body".to_string(), nf, nf)];
    for i in 0..blocks {
        for r in 1..=3 {
            for k in 1..=5 {
                let cout = if k == 5 { nf } else { gc };
                convs.push((format!("body.{i}.rdb{r}.conv{k}"), cout, nf + (k - 1) * gc));
            }
        }
    }
    convs.extend([("conv_up1".into(), nf, nf), ("conv_up2".into(), nf, nf), ("conv_hr".into(), nf, nf), ("conv_last".into(), 3, nf)]);
    convs
        .into_iter()
        .flat_map(|(name, cout, cin)| {
            let w = tensor(format!("{name}.weight"), vec![cout, cin, 3, 3], seed);
            let b = tensor(format!("{name}.bias"), vec![cout], seed);
            [w, b]
        })
        .collect()
}

fn main() {
    let mut size: FrameSize = "320x180".parse().unwrap();
    let mut frames = 4u64;
    let mut blocks = 23usize;
    let mut compacts = vec![16usize, 32];
    let mut tile: Option<usize> = None;
    let mut precision = framestream::model::Precision::F32;
    common::parse_flags(|flag, value| {
        match flag {
            "--size" => size = common::parsed(flag, &value()),
            "--frames" => frames = common::parsed(flag, &value()),
            "--rrdb-blocks" => blocks = common::parsed(flag, &value()),
            "--compact" => compacts = common::list::<usize>(flag, &value()).into_iter().filter(|&k| k > 0).collect(),
            "--tile" => tile = Some(common::parsed(flag, &value())),
            "--precision" => precision = common::parsed(flag, &value()),
            _ => return false,
        }
        true
    });
    let dir = std::env::temp_dir().join(format!("framestream-upscale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = 7u64;
    let mut models = Vec::new();
    for convs in compacts {
        let name = match convs {
            16 => "SRVGGNetCompact K16 (animevideov3)".to_string(),
            32 => "SRVGGNetCompact K32 (general-x4v3)".to_string(),
            k => format!("SRVGGNetCompact K{k}"),
        };
        models.push((name, compact(convs, &mut seed)));
    }
    if blocks > 0 {
        let name = if blocks == 23 { "RRDBNet x4 23 blocks (x4plus)".to_string() } else { format!("RRDBNet x4 {blocks} blocks") };
        models.push((name, rrdb(blocks, &mut seed)));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let device = Device::from_env().expect("a device");
    println!("device: {}", device.info());
    let tiling = tile.map_or("whole frames".to_string(), |t| format!("halo tiles of {t}"));
    println!("{}x{} → x4, chunks of {frames} frames, {tiling}, {precision}", size.width, size.height);
    println!();
    println!("| model | parameters | frames/s | s/frame |");
    println!("|---|---:|---:|---:|");
    for (name, tensors) in models {
        let params: usize = tensors.iter().map(|t| t.2.len()).sum();
        let path = dir.join("model.safetensors");
        save_safetensors(&path, &tensors).unwrap();
        let model = UpscaleModel::load(&path).unwrap();
        let mut stage = Upscale::model(model).memory_budget(16 << 30).precision(precision);
        if let Some(tile) = tile {
            stage = stage.tile(tile, 0);
        }
        let video = TestPattern::new(size.width, size.height, frames).unwrap().pipe(stage);
        let request = OpenRequest::new(&device).with_chunk_frames(frames as usize);
        let (report, elapsed) = runtime.block_on(async {
            // One warm-up run compiles the kernels.
            drain(&video, &request).await.unwrap();
            let start = Instant::now();
            let report = drain(&video, &request).await.unwrap();
            (report, start.elapsed().as_secs_f64())
        });
        let fps = report.frames as f64 / elapsed;
        println!("| {name} | {params} | {fps:.3} | {:.2} |", 1.0 / fps);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
