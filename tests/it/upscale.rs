//! ESRGAN-family models against spandrel's outputs (tests/fixtures/upscale, made by
//! tools/make_upscale_fixtures.py).

use std::path::PathBuf;

use framestream::model::esrgan::UpscaleModel;
use framestream::model::WeightFile;

use crate::common::device;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upscale").join(name)
}

/// (input `[1, h, w, 3]`, reference outputs by name).
fn references(model: &str) -> WeightFile {
    WeightFile::open(fixture(&format!("{model}.reference.safetensors"))).unwrap()
}

fn max_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| if x.is_finite() { (x - y).abs() } else { f32::INFINITY }).fold(0.0, f32::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untiled_forward_matches_spandrel() {
    let device = device();
    for (model_file, reference) in [
        ("rrdb_x4_old.pth", "rrdb_x4_old"),
        ("rrdb_x4_old.safetensors", "rrdb_x4_old"),
        ("rrdb_x2plus_bs.pth", "rrdb_x2plus_bs"),
        ("rrdb_x2_plus_f16.safetensors", "rrdb_x2_plus_f16"),
        ("compact_x4.pth", "compact_x4"),
        ("compact_x4.safetensors", "compact_x4"),
        ("compact_x4_f16.pth", "compact_x4_f16"),
        ("compact_x2.safetensors", "compact_x2"),
    ] {
        let model = UpscaleModel::load(fixture(model_file)).unwrap();
        let refs = references(reference);
        let input = refs.tensor("input").unwrap();
        let want = refs.tensor("output").unwrap();
        let [_, h, w, _] = input.shape[..] else { panic!("input shape") };
        let on_device = model.on(&device).unwrap();
        let x = device.upload(&input.data).unwrap();
        let y = on_device.forward(&device, &x, (1, h, w)).unwrap();
        let got: Vec<f32> = device.read_f32(&y).await.unwrap().iter().map(|v| v.clamp(0.0, 1.0)).collect();
        let err = max_error(&got, &want.data);
        assert!(err < 1e-4, "{model_file}: max error {err}");
    }
}

use framestream::prelude::*;
use futures::StreamExt;

use crate::common::{drain_events, host_frames, progress, read_all, request};

const MODELS: [(&str, &str); 6] = [
    ("rrdb_x4_old.safetensors", "rrdb_x4_old"),
    ("rrdb_x2plus_bs.pth", "rrdb_x2plus_bs"),
    ("rrdb_x2_plus_f16.safetensors", "rrdb_x2_plus_f16"),
    ("compact_x4.pth", "compact_x4"),
    ("compact_x4_f16.pth", "compact_x4_f16"),
    ("compact_x2.safetensors", "compact_x2"),
];

fn input_batch(reference: &str) -> (ImageBatch, Vec<f32>, [usize; 4]) {
    let refs = references(reference);
    let input = refs.tensor("input").unwrap();
    let shape: [usize; 4] = input.shape.clone().try_into().unwrap();
    (ImageBatch::from_host(input.data.clone(), shape).unwrap(), input.data, shape)
}

async fn upscaled(source: &ImageBatch, stage: Upscale) -> Vec<f32> {
    host_frames(&source.clone().pipe(stage)).await.data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_matches_spandrel_whole_and_comfyui_tiled() {
    for (model_file, reference) in MODELS {
        let model = UpscaleModel::load(fixture(model_file)).unwrap();
        let refs = references(reference);
        let (batch, _, _) = input_batch(reference);
        let whole = upscaled(&batch, Upscale::model(model.clone())).await;
        let err = max_error(&whole, &refs.tensor("output").unwrap().data);
        assert!(err < 1e-4, "{model_file} whole: max error {err}");
        for (tile, overlap) in [(12, 4), (10, 2)] {
            let stage = Upscale::model(model.clone()).tile(tile, overlap).blend(Blend::Feather);
            let got = upscaled(&batch, stage).await;
            let want = refs.tensor(&format!("tiled_{tile}_{overlap}")).unwrap();
            let err = max_error(&got, &want.data);
            assert!(err < 1e-4, "{model_file} feather {tile}/{overlap}: max error {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halo_with_the_receptive_field_is_seamless() {
    for (model_file, reference) in MODELS {
        let model = UpscaleModel::load(fixture(model_file)).unwrap();
        let (batch, _, _) = input_batch(reference);
        let whole = upscaled(&batch, Upscale::model(model.clone())).await;
        let margin = model.receptive_radius().ceil() as usize;
        for (tile, feather) in [(8, 0), (8, 4), (6, 2)] {
            let stage = Upscale::model(model.clone()).tile(tile, 2).blend(Blend::Halo).halo(margin, feather);
            let err = max_error(&upscaled(&batch, stage).await, &whole);
            assert!(err < 1e-4, "{model_file} halo tile {tile} margin {margin} feather {feather}: {err}");
        }
    }
    // A margin below the receptive radius shows (the test can fail).
    let model = UpscaleModel::load(fixture("compact_x4.pth")).unwrap();
    let (batch, _, _) = input_batch("compact_x4");
    let whole = upscaled(&batch, Upscale::model(model.clone())).await;
    let short = Upscale::model(model).tile(6, 2).blend(Blend::Halo).halo(1, 0);
    assert!(max_error(&upscaled(&batch, short).await, &whole) > 1e-3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_precision_stays_within_1e2_of_f32() {
    use framestream::model::Precision;
    let device = crate::common::device();
    for (model_file, reference) in MODELS {
        let model = UpscaleModel::load(fixture(model_file)).unwrap();
        let refs = references(reference);
        let want = refs.tensor("output").unwrap();
        let (batch, _, _) = input_batch(reference);
        for precision in [Precision::F16, Precision::BF16] {
            let stage = Upscale::model(model.clone()).precision(precision);
            if precision == Precision::BF16 && model.on_in(&device, precision).is_err() {
                // Not every device has bf16 (lavapipe has not): a clear error, not a wrong answer.
                let err = collect(&batch.clone().pipe(stage), &request(1), 16).await.unwrap_err().to_string();
                assert!(err.contains("cannot compute in bf16"), "{err}");
                continue;
            }
            let err = max_error(&upscaled(&batch, stage).await, &want.data);
            assert!(err < 1e-2, "{model_file} in {precision}: max error {err} from the f32 reference");
            // Tiled too (the blend runs on the converted output), against f32 tiled alike.
            let tiled = Upscale::model(model.clone()).tile(8, 2);
            let want_tiled = upscaled(&batch, tiled.clone()).await;
            let err = max_error(&upscaled(&batch, tiled.precision(precision)).await, &want_tiled);
            assert!(err < 1e-2, "{model_file} tiled in {precision}: max error {err} from f32 tiled");
        }
        let on_device = model.on_in(&device, Precision::F16).unwrap();
        assert_eq!(on_device.precision(), Precision::F16);
    }
}

fn video(frames: usize, h: usize, w: usize, c: usize) -> ImageBatch {
    let data: Vec<f32> = (0..frames * h * w * c).map(|i| ((i * 7919) % 1000) as f32 / 999.0).collect();
    ImageBatch::from_host(data, [frames, h, w, c]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunking_does_not_change_frames() {
    let model = UpscaleModel::load(fixture("compact_x2.safetensors")).unwrap();
    let source = video(8, 10, 14, 3);
    for stage in [Upscale::model(model.clone()), Upscale::model(model.clone()).tile(6, 2)] {
        let piped = source.clone().pipe(stage);
        let (_, all) = read_all(&piped, 8).await;
        for n in [1, 3] {
            let (shapes, data) = read_all(&piped, n).await;
            assert!(shapes.iter().all(|s| s[1..] == [20, 28, 3]));
            assert!(data == all, "chunks of {n}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_releases_device_memory() {
    let model = UpscaleModel::load(fixture("rrdb_x4_old.pth")).unwrap();
    let req = request(2);
    let before = req.device().memory_usage().unwrap();
    let piped = video(6, 12, 10, 3).pipe(Upscale::model(model).tile(8, 2));
    let mut stream = piped.open(&req);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.shape(), [2, 48, 40, 3]);
    drop(first);
    drop(stream);
    req.device().sync().await.unwrap();
    let after = req.device().memory_usage().unwrap();
    assert_eq!(after.bytes_in_use, before.bytes_in_use);
}

#[test]
fn weights_upload_once_per_device_and_leave_with_the_model() {
    use std::sync::Arc;
    let device = device();
    let model = UpscaleModel::load(fixture("compact_x2.safetensors")).unwrap();
    let weights = model.on(&device).unwrap();
    // Another handle of the device (another job) and a clone of the model share the upload.
    assert!(Arc::ptr_eq(&weights, &model.clone().on(&device.fork()).unwrap()));
    // Another precision is another upload; another loaded model has its own.
    if let Ok(halves) = model.on_in(&device, framestream::model::Precision::F16) {
        assert!(!Arc::ptr_eq(&weights, &halves));
    }
    let again = UpscaleModel::load(fixture("compact_x2.safetensors")).unwrap();
    assert!(!Arc::ptr_eq(&weights, &again.on(&device).unwrap()));
    // The device's cache lets go of them with the model's last clone.
    let held = Arc::downgrade(&weights);
    drop(weights);
    assert!(held.upgrade().is_some(), "held while the model lives");
    drop(model);
    assert!(held.upgrade().is_none(), "evicted with the model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_tiles_halve_and_say_so() {
    let model = UpscaleModel::load(fixture("compact_x4.pth")).unwrap();
    let source = video(1, 300, 260, 3);
    let whole = upscaled(&source, Upscale::model(model.clone())).await;
    let (sender, mut events) = progress();
    let stage = Upscale::model(model.clone()).memory_budget(75 << 20).halo(6, 4);
    let piped = source.clone().pipe(stage);
    let got = collect(&piped, &request(1).with_progress(sender), 10).await.unwrap();
    let got = got.to_host().await.unwrap().data;
    let retries: Vec<String> = drain_events(&mut events)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Retry { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(!retries.is_empty(), "the budget forces smaller tiles");
    assert!(retries[0].contains("512"), "{retries:?}");
    assert!(max_error(&got, &whole) < 1e-4, "halo tiles after the fallback are still exact");
    // A budget nothing fits is an error, not a crash.
    let tiny = source.pipe(Upscale::model(model).memory_budget(1 << 20));
    let err = drain(&tiny, &request(1)).await.unwrap_err();
    assert!(err.to_string().contains("memory budget"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpha_and_grey_frames() {
    let model = UpscaleModel::load(fixture("compact_x2.safetensors")).unwrap();
    let (h, w) = (10, 12);
    let rgba = video(2, h, w, 4);
    let rgba_host = host_frames(&rgba).await.data;
    let rgb: Vec<f32> = rgba_host.chunks(4).flat_map(|p| p[..3].to_vec()).collect();
    let rgb_out = upscaled(&ImageBatch::from_host(rgb, [2, h, w, 3]).unwrap(), Upscale::model(model.clone())).await;
    let got = upscaled(&rgba, Upscale::model(model.clone())).await;
    let got_rgb: Vec<f32> = got.chunks(4).flat_map(|p| p[..3].to_vec()).collect();
    assert!(max_error(&got_rgb, &rgb_out) < 1e-6, "the colour of RGBA is the RGB upscale");
    let alpha: Vec<f32> = rgba_host.chunks(4).map(|p| p[3]).collect();
    let alpha_up = host_frames(&ImageBatch::from_host(alpha, [2, h, w, 1]).unwrap().pipe(Resize::to_size(2 * w, 2 * h, Filter::Bilinear))).await.data;
    let got_alpha: Vec<f32> = got.chunks(4).map(|p| p[3]).collect();
    assert!(max_error(&got_alpha, &alpha_up) < 1e-6, "alpha is resized bilinearly");

    let grey = video(1, h, w, 1);
    let grey_host = host_frames(&grey).await.data;
    let as_rgb: Vec<f32> = grey_host.iter().flat_map(|&v| [v, v, v]).collect();
    let rgb_out = upscaled(&ImageBatch::from_host(as_rgb, [1, h, w, 3]).unwrap(), Upscale::model(model.clone())).await;
    let luma: Vec<f32> = rgb_out.chunks(3).map(|p| (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]).clamp(0.0, 1.0)).collect();
    let got = upscaled(&grey, Upscale::model(model)).await;
    assert!(max_error(&got, &luma) < 1e-5, "grey goes through the RGB model and back as luma");
}

#[test]
fn bad_model_files_say_what_they_are() {
    let dir = crate::common::temp_dir("bad-models");
    let text = dir.join("notes.pth");
    std::fs::write(&text, "hello").unwrap();
    let err = UpscaleModel::load(&text).unwrap_err();
    assert!(err.to_string().contains("notes.pth"), "{err}");
    let legacy = dir.join("legacy.pth");
    std::fs::write(&legacy, [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8]).unwrap();
    assert!(UpscaleModel::load(&legacy).unwrap_err().to_string().contains("legacy"));
    // A valid safetensors file that is not an upscaler.
    let err = UpscaleModel::load(fixture("compact_x4.reference.safetensors")).unwrap_err();
    assert!(err.to_string().contains("not an ESRGAN or compact upscaler"), "{err}");
    assert!(UpscaleModel::load(dir.join("missing.pth")).is_err());
    // A tensor of the wrong shape, and a missing one: named, with both shapes.
    let file = WeightFile::open(fixture("compact_x2.safetensors")).unwrap();
    let mut tensors = Vec::new();
    for name in file.names() {
        let t = file.tensor(name).unwrap();
        let shape = if name == "body.2.weight" { vec![8, 8, 3, 1] } else { t.shape.clone() };
        let data = if name == "body.2.weight" { t.data[..192].to_vec() } else { t.data.clone() };
        tensors.push((name.to_string(), shape, data));
    }
    let broken = dir.join("broken.safetensors");
    framestream::model::save_safetensors(&broken, &tensors).unwrap();
    let err = UpscaleModel::load(&broken).unwrap_err().to_string();
    assert!(err.contains("body.2.weight") && err.contains("[8, 8, 3, 1]") && err.contains("[8, 8, 3, 3]"), "{err}");
    let original = file.tensor("body.2.weight").unwrap();
    tensors.retain(|t| t.0 != "body.2.bias");
    for t in tensors.iter_mut().filter(|t| t.0 == "body.2.weight") {
        (t.1, t.2) = (original.shape.clone(), original.data.clone());
    }
    framestream::model::save_safetensors(&broken, &tensors).unwrap();
    let err = UpscaleModel::load(&broken).unwrap_err().to_string();
    assert!(err.contains("body.2.bias"), "{err}");
}

/// `file`'s tensors with `edit` applied to one of them, written to `name`.
fn edited(file: &str, name: &str, tensor: &str, edit: impl Fn(Vec<usize>) -> Vec<usize>) -> PathBuf {
    let file = WeightFile::open(fixture(file)).unwrap();
    let tensors: Vec<_> = file
        .names()
        .map(|n| {
            let t = file.tensor(n).unwrap();
            if n == tensor {
                let shape = edit(t.shape);
                let len = shape.iter().product();
                (n.to_string(), shape, vec![0.5; len])
            } else {
                (n.to_string(), t.shape, t.data)
            }
        })
        .collect();
    let path = crate::common::temp_dir("hostile-models").join(name);
    framestream::model::save_safetensors(&path, &tensors).unwrap();
    path
}

#[test]
fn hostile_shapes_are_errors_not_panics() {
    // A compact model whose first convolution reads 0 channels (it divided by zero).
    let zero = edited("compact_x2.safetensors", "zero-in.safetensors", "body.0.weight", |s| vec![s[0], 0, 3, 3]);
    let err = UpscaleModel::load(&zero).unwrap_err().to_string();
    assert!(err.contains("body.0.weight") && err.contains("0 to"), "{err}");
    // An RRDBNet whose first weight is 1-D (it indexed out of bounds), or has 0 outputs.
    for (name, shape) in [("flat.safetensors", vec![64]), ("empty.safetensors", vec![0, 3, 3, 3])] {
        let path = edited("rrdb_x4_old.safetensors", name, "model.0.weight", |_| shape.clone());
        let err = UpscaleModel::load(&path).unwrap_err().to_string();
        assert!(err.contains("conv_first.weight") && err.contains(&format!("{shape:?}")), "{err}");
    }
    // Sizes past any model are refused before anything is sized from them.
    let wide = edited("compact_x2.safetensors", "wide.safetensors", "body.0.weight", |s| vec![5000, s[1], 3, 3]);
    assert!(UpscaleModel::load(&wide).unwrap_err().to_string().contains("features"));
}

#[test]
fn a_pth_memo_bomb_is_refused_in_bounded_memory() {
    use std::io::Write;
    // l = []; then 40 times l = [l, l, l, l]: 4^40 list nodes from a few hundred bytes of memo
    // references. The unpickler charges each copy against its budget and stops.
    let mut pickle = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        pickle.extend([b'(', b'h', 0, b'h', 0, b'h', 0, b'h', 0, b'l', b'q', 0]);
    }
    pickle.push(b'.');
    let mut archive = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    archive.start_file("archive/data.pkl", stored).unwrap();
    archive.write_all(&pickle).unwrap();
    let bytes = archive.finish().unwrap().into_inner();
    assert!(bytes.len() < 1024, "{} bytes", bytes.len());
    let path = crate::common::temp_dir("memo-bomb").join("memo-bomb.pth");
    std::fs::write(&path, bytes).unwrap();
    let err = UpscaleModel::load(&path).unwrap_err().to_string();
    assert!(err.contains("memo-bomb.pth") && err.contains("data.pkl") && err.contains("pickle bomb"), "{err}");
}
