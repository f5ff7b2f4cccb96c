//! The LTX VAE decoder (LTX-Video 0.9.x, LTX-2.0, LTX-2.3) against its reference
//! (tests/fixtures/ltx, made by tools/make_ltx_fixtures.py), and the streaming guarantees:
//! chunk invariance, replay, seeded noise, edge lengths, cancellation and bad inputs.

use std::path::PathBuf;

use framestream::model::WeightFile;
use framestream::model::ltx::{Padding, Precision};
use framestream::prelude::*;
use futures::StreamExt;

use crate::common::{self, latent_of, max_error, read_all, request, rewritten, temp_dir};

fn fixture(name: &str) -> PathBuf {
    common::fixture("ltx", name)
}

fn expected(version: &str) -> WeightFile {
    WeightFile::open(fixture(&format!("{version}-expected.safetensors"))).unwrap()
}


/// A deterministic latent `[1, 16, frames, h, w]` of values in about [−2, 2].
fn random_latent(frames: usize, h: usize, w: usize) -> Latent {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<f32> = (0..16 * frames * h * w)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Latent::from_tensor(&[1, 16, frames, h, w], &data, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_and_naming_matches_the_reference() {
    // (VAE, padding override, expected file, expected frames, latent, seed, noise scale)
    type Case = (&'static str, Option<Padding>, &'static str, &'static str, &'static str, u64, f32);
    let cases: &[Case] = &[
        ("v0.safetensors", None, "v0", "frames_reflect", "latent", 0, 0.0),
        ("v0.safetensors", Some(Padding::Zeros), "v0", "frames_zeros", "latent", 0, 0.0),
        ("v0-diffusers", None, "v0", "frames_zeros", "latent", 0, 0.0),
        ("v1-combined.safetensors", None, "v1", "frames_seed0", "latent", 0, 0.0),
        ("v1-combined.safetensors", None, "v1", "frames_seed5_noise", "latent", 5, 0.025),
        ("v2.safetensors", None, "v2", "frames", "latent", 0, 0.0),
        ("v2.safetensors", None, "v2", "frames_seed5_noise", "latent", 5, 0.025),
        ("v2.safetensors", None, "v2", "frames_t1", "latent_t1", 0, 0.0),
        ("v2-diffusers", None, "v2", "frames", "latent", 0, 0.0),
        // LTX-2 decoders take no timestep and no noise: seed and noise scale change nothing.
        ("v20-combined.safetensors", None, "v20", "frames", "latent", 5, 0.025),
        ("v20-combined.safetensors", None, "v20", "frames_t1", "latent_t1", 0, 0.0),
        ("v20-diffusers", None, "v20", "frames", "latent", 0, 0.0),
        ("v23.safetensors", None, "v23", "frames", "latent", 5, 0.025),
        ("v23.safetensors", None, "v23", "frames_t1", "latent_t1", 0, 0.0),
        ("v23.safetensors", None, "v23", "frames_long", "latent_long", 0, 0.0),
        ("v23-diffusers", None, "v23", "frames", "latent", 0, 0.0),
    ];
    for &(vae, padding, version, frames, latent, seed, noise) in cases {
        let mut model = LtxVae::load(fixture(vae)).unwrap();
        if let Some(p) = padding {
            model = model.with_padding(p);
        }
        let reference = expected(version);
        let want = reference.tensor(frames).unwrap();
        let source = LtxVaeDecode::new(model, latent_of(&reference, latent)).unwrap().seed(seed).noise_scale(noise);
        let info = source.info().unwrap();
        assert_eq!(
            [info.total_frames.unwrap() as usize, info.height, info.width, info.channels],
            want.shape[..],
            "{vae} {frames}"
        );
        let (_, got) = read_all(&source, 4).await;
        let err = max_error(&got, &want.data);
        assert!(err < 1e-4, "{vae} → {frames}: max error {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_pieces_and_replays_give_the_same_frames() {
    let latent = random_latent(4, 2, 2);
    // (VAE, noise scale, whether the decode is noisy): LTX-2 decoders ignore the noise.
    for (vae, noise, noisy) in [
        ("v2.safetensors", 0.0, false),
        ("v1-combined.safetensors", 0.025, true),
        ("v20-combined.safetensors", 0.025, false),
        ("v23.safetensors", 0.025, false),
    ] {
        let model = LtxVae::load(fixture(vae)).unwrap();
        let source = LtxVaeDecode::new(model, latent.clone()).unwrap().seed(11).noise_scale(noise);
        assert_eq!(source.info().unwrap().total_frames, Some(25));
        let (_, whole) = read_all(&source, 25).await;
        for n in [1, 8, 9, 17] {
            let (shapes, got) = read_all(&source, n).await;
            assert!(shapes.iter().all(|s| s[0] >= 1 && s[0] <= n));
            assert!(got == whole, "{vae}: chunks of {n} differ by {}", max_error(&got, &whole));
        }
        // One frame per step at every level, and the largest pieces.
        for bytes in [1, 1 << 30] {
            let (_, got) = read_all(&source.clone().piece_bytes(bytes), 5).await;
            assert!(got == whole, "{vae}: pieces of {bytes} bytes differ by {}", max_error(&got, &whole));
        }
        let (_, again) = read_all(&source, 25).await;
        assert!(again == whole, "{vae}: a replay differs");
        let (_, other_seed) = read_all(&source.clone().seed(12), 25).await;
        assert_eq!(other_seed != whole, noisy, "{vae}: only noise depends on the seed");
    }
    // Without noise the seed changes nothing (0.9.5+ has no injected noise).
    let model = LtxVae::load(fixture("v2.safetensors")).unwrap();
    let quiet = LtxVaeDecode::new(model, latent).unwrap().noise_scale(0.0);
    let (_, a) = read_all(&quiet.clone().seed(1), 25).await;
    let (_, b) = read_all(&quiet.seed(2), 25).await;
    assert!(a == b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ltx23_past_its_lag_and_at_every_length() {
    // The 2.3 graph emits nothing before the end for many latent frames (15 for the release, 9
    // for this fixture's shallower levels): 17 frames take the first output from mid-stream
    // with one-frame pieces and the rest from the end flush.
    let model = LtxVae::load(fixture("v23.safetensors")).unwrap();
    let source = LtxVaeDecode::new(model.clone(), random_latent(17, 1, 1)).unwrap();
    assert_eq!(source.info().unwrap().total_frames, Some(129));
    let (_, whole) = read_all(&source, 129).await;
    for n in [1, 7, 17] {
        let (_, got) = read_all(&source, n).await;
        assert!(got == whole, "chunks of {n} differ by {}", max_error(&got, &whole));
    }
    let (_, got) = read_all(&source.clone().piece_bytes(1), 9).await;
    assert!(got == whole, "one-frame pieces differ by {}", max_error(&got, &whole));
    // 8(T − 1) + 1 frames for every short length.
    for t in 1..=3 {
        let (shapes, _) = read_all(&LtxVaeDecode::new(model.clone(), random_latent(t, 1, 2)).unwrap(), 4).await;
        assert_eq!(shapes.iter().map(|s| s[0]).sum::<usize>(), 8 * (t - 1) + 1, "T = {t}");
        assert!(shapes.iter().all(|s| s[1..] == [32, 64, 3]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_lengths() {
    let model = LtxVae::load(fixture("v2.safetensors")).unwrap();
    // 2 latent frames → 9 frames: chunks of 3 are three full chunks, never an empty one.
    let source = LtxVaeDecode::new(model.clone(), random_latent(2, 2, 2)).unwrap();
    let (shapes, _) = read_all(&source, 3).await;
    assert_eq!(shapes, vec![[3, 64, 64, 3]; 3]);
    let (shapes, _) = read_all(&source, 100).await;
    assert_eq!(shapes, vec![[9, 64, 64, 3]]);
    // One latent frame → one frame.
    let single = LtxVaeDecode::new(model, random_latent(1, 2, 2)).unwrap();
    let (shapes, data) = read_all(&single, 8).await;
    assert_eq!(shapes, vec![[1, 64, 64, 3]]);
    assert!(data.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_mid_decode_releases_device_memory() {
    for vae in ["v1-combined.safetensors", "v23.safetensors"] {
        let model = LtxVae::load(fixture(vae)).unwrap();
        let source = LtxVaeDecode::new(model, random_latent(5, 2, 2)).unwrap();
        let req = request(2);
        let before = req.device().memory_usage().unwrap();
        let mut stream = source.open(&req);
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.shape(), [2, 64, 64, 3]);
        drop(first);
        drop(stream);
        req.device().sync().await.unwrap();
        let after = req.device().memory_usage().unwrap();
        assert_eq!(after.bytes_in_use, before.bytes_in_use, "{vae}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_without_config_is_detected() {
    let file = WeightFile::open(fixture("v2.safetensors")).unwrap();
    let bare = rewritten(&file, "v2-bare.safetensors", |_, s, d| Some((s, d)));
    let model = LtxVae::load(&bare).unwrap();
    let configured = LtxVae::load(fixture("v2.safetensors")).unwrap();
    assert_eq!(model.config().blocks, configured.config().blocks);
    assert_eq!(model.config().latent_channels, 16);
    assert!(model.config().timestep_conditioning);
    assert_eq!(model.padding(), Padding::Reflect, "no config: ComfyUI's default");
    let reference = expected("v2");
    let source = LtxVaeDecode::new(model.with_padding(Padding::Zeros), latent_of(&reference, "latent")).unwrap().noise_scale(0.0);
    let (_, got) = read_all(&source, 9).await;
    assert!(max_error(&got, &reference.tensor("frames").unwrap().data) < 1e-4);
    // The same for 0.9.0 (channel-changing resblocks) and 0.9.1 (injected noise).
    for (vae, version) in [
        ("v0.safetensors", "LTX-Video 0.9.0-like"),
        ("v1-combined.safetensors", "LTX-Video 0.9.1-like"),
        ("v20-combined.safetensors", "LTX-2.0-like"),
        ("v23.safetensors", "LTX-2.3-like"),
    ] {
        let file = WeightFile::open(fixture(vae)).unwrap();
        let bare = rewritten(&file, &format!("bare-{vae}"), |_, s, d| Some((s, d)));
        let detected = LtxVae::load(&bare).unwrap();
        let configured = LtxVae::load(fixture(vae)).unwrap();
        assert_eq!(detected.config().blocks, configured.config().blocks, "{vae}");
        assert_eq!(detected.config().version(), version);
        if version.starts_with("LTX-2") {
            assert_eq!(detected.padding(), configured.padding(), "{vae}: the release's padding");
        }
    }
    // A decoder without conditioning may carry an all-zero last_scale_shift_table: it does not
    // make a bare LTX-2.0 file timestep-conditioned.
    let file = WeightFile::open(fixture("v20-combined.safetensors")).unwrap();
    let mut tensors: Vec<_> = file
        .names()
        .map(|n| {
            let t = file.tensor(n).unwrap();
            (n.to_string(), t.shape, t.data)
        })
        .collect();
    tensors.push(("vae.decoder.last_scale_shift_table".into(), vec![2, 4], vec![0.0; 8]));
    let zero_table = temp_dir("ltx-zero-table").join("v20-zero-table.safetensors");
    framestream::model::save_safetensors(&zero_table, &tensors).unwrap();
    let detected = LtxVae::load(&zero_table).unwrap();
    assert!(!detected.config().timestep_conditioning);
    assert_eq!(detected.config().blocks, LtxVae::load(fixture("v20-combined.safetensors")).unwrap().config().blocks);
    assert_eq!(detected.padding(), Padding::Reflect);
    // LTX-2 without metadata decodes as the reference: strides from the convolutions, 2.0's
    // residual upsamplers and reflect padding, 2.3's plain ones and zeros.
    for (vae, version) in [("v20-combined.safetensors", "v20"), ("v23.safetensors", "v23")] {
        let file = WeightFile::open(fixture(vae)).unwrap();
        let model = LtxVae::load(rewritten(&file, &format!("decode-bare-{vae}"), |_, s, d| Some((s, d)))).unwrap();
        let reference = expected(version);
        let (_, got) = read_all(&LtxVaeDecode::new(model, latent_of(&reference, "latent")).unwrap(), 17).await;
        assert!(max_error(&got, &reference.tensor("frames").unwrap().data) < 1e-4, "{vae}");
    }
}

#[test]
fn what_the_weights_cannot_tell_is_asked_for() {
    use serde_json::json;
    // Upsamplers halving the width and one keeping it, no timestep conditioning: residual or
    // not is not in the weights.
    let config = json!({
        "latent_channels": 16, "patch_size": 4, "norm_layer": "pixel_norm", "decoder_base_channels": 4,
        "decoder_blocks": [["res_x", 1], ["compress_all", {"multiplier": 2}], ["res_x", 1], ["compress_all", {"multiplier": 1}], ["res_x", 1]],
    });
    let tensors: Vec<_> = framestream::model::ltx::LtxConfig::from_official(&config)
        .unwrap()
        .tensors()
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            (name, shape, vec![0.5; n])
        })
        .collect();
    let path = temp_dir("ltx-ambiguous").join("ambiguous.safetensors");
    framestream::model::save_safetensors(&path, &tensors).unwrap();
    let err = LtxVae::load(&path).unwrap_err().to_string();
    assert!(err.contains("residual") && err.contains("metadata"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoder_says_what_it_recognised_before_the_first_frame() {
    let model = LtxVae::load(fixture("v23.safetensors")).unwrap();
    assert_eq!(model.config().version(), "LTX-2.3-like");
    let source = LtxVaeDecode::new(model, random_latent(3, 2, 3)).unwrap();
    let (sender, mut events) = crate::common::progress();
    let req = request(4).with_progress(sender);
    let mut stream = source.open(&req);
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let events = crate::common::drain_events(&mut events);
    let infos: Vec<(usize, String)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.kind {
            EventKind::Info { message } => Some((i, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(infos.len(), 1, "{infos:?}");
    let first_frames = events.iter().position(|e| matches!(e.kind, EventKind::Progress { .. })).unwrap();
    assert!(infos[0].0 < first_frames, "said before the first frame");
    let info = &infos[0].1;
    assert!(info.starts_with("LTX-2.3-like VAE") && info.contains("zeros padding"), "{info}");
    assert!(info.contains("3 latent frames of 3×2 → 17 frames of 96×64"), "{info}");
}

#[test]
fn bad_checkpoints_name_the_tensor() {
    let file = WeightFile::open(fixture("v2.safetensors")).unwrap();
    let target = "decoder.up_blocks.2.res_blocks.0.conv2.conv.weight";
    let misshaped = rewritten(&file, "misshaped.safetensors", |n, s, d| {
        Some(if n == target { (vec![16, 16, 3, 3, 1], d[..16 * 16 * 9].to_vec()) } else { (s, d) })
    });
    let err = LtxVae::load(&misshaped).unwrap_err().to_string();
    assert!(err.contains(target) && err.contains("[16, 16, 3, 3, 1]") && err.contains("[16, 16, 3, 3, 3]"), "{err}");
    let missing = "decoder.up_blocks.2.res_blocks.0.conv2.conv.bias";
    let without = rewritten(&file, "missing.safetensors", |n, s, d| (n != missing).then_some((s, d)));
    let err = LtxVae::load(&without).unwrap_err().to_string();
    assert!(err.contains(missing) && err.contains("[16]"), "{err}");
    // Not a VAE at all, a folder that is not a diffusers folder, a missing file.
    let err = LtxVae::load(fixture("v2-expected.safetensors")).unwrap_err().to_string();
    assert!(err.contains("not an LTX VAE"), "{err}");
    let err = LtxVae::load(temp_dir("ltx-empty")).unwrap_err().to_string();
    assert!(err.contains("diffusers VAE folder"), "{err}");
    assert!(LtxVae::load(fixture("nothing.safetensors")).is_err());
    // diffusers names without their config.
    let names = WeightFile::open(fixture("v2-diffusers/diffusion_pytorch_model.safetensors")).unwrap();
    let alone = rewritten(&names, "alone.safetensors", |_, s, d| Some((s, d)));
    let err = LtxVae::load(&alone).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_latents_say_what_is_wrong() {
    let shape_err = |shape: &[usize], index: Option<usize>| {
        let n = shape.iter().product();
        Latent::from_tensor(shape, &vec![0.5; n], index).unwrap_err().to_string()
    };
    assert!(shape_err(&[16, 2, 2, 2], None).contains("5 dimensions"));
    assert!(shape_err(&[2, 16, 2, 2, 2], None).contains("batch index"));
    assert!(Latent::from_tensor(&[2, 16, 2, 2, 2], &vec![0.5; 256], Some(1)).is_ok());
    assert!(shape_err(&[2, 16, 2, 2, 2], Some(2)).contains("batch index 2"));
    assert!(shape_err(&[1, 16, 0, 2, 2], None).contains("empty"));
    let mut nan = vec![0.5; 128];
    nan[7] = f32::NAN;
    assert!(Latent::from_tensor(&[1, 16, 2, 2, 2], &nan, None).unwrap_err().to_string().contains("non-finite"));
    // Wrong channel count for the VAE, and reflection padding on a 1-pixel-wide latent.
    let v0 = LtxVae::load(fixture("v0.safetensors")).unwrap();
    let eight = Latent::from_tensor(&[1, 8, 1, 2, 2], &[0.1; 32], None).unwrap();
    let err = LtxVaeDecode::new(v0.clone(), eight).unwrap_err().to_string();
    assert!(err.contains("8 channels") && err.contains("16"), "{err}");
    let narrow = LtxVaeDecode::new(v0.clone(), random_latent(2, 2, 1)).unwrap();
    let err = collect(&narrow, &request(4), 100).await.unwrap_err().to_string();
    assert!(err.contains("reflection"), "{err}");
    let zeros = LtxVaeDecode::new(v0.with_padding(Padding::Zeros), random_latent(2, 2, 1)).unwrap();
    assert!(collect(&zeros, &request(4), 100).await.is_ok());
    // A frame too large for one device buffer: refused before any work, with the limit.
    let req = request(1);
    let limit = req.device().max_buffer_bytes() as usize;
    let side = ((limit / (2 * 48 * 4)) as f64).sqrt() as usize / 8 + 8;
    let huge = Latent::from_tensor(&[1, 16, 1, side, side], &vec![0.0; 16 * side * side], None).unwrap();
    let v2 = LtxVae::load(fixture("v2.safetensors")).unwrap();
    let err = collect(&LtxVaeDecode::new(v2, huge).unwrap(), &req, 10).await.unwrap_err().to_string();
    assert!(err.contains("buffer limit"), "{err}");
}

#[test]
fn latent_files() {
    // ComfyUI's .latent: the stored tensor as it is.
    let reference = expected("v2");
    let latent = Latent::open(fixture("v2.latent"), None).unwrap();
    assert_eq!(latent, latent_of(&reference, "latent"));
    let dir = temp_dir("latents");
    let t = reference.tensor("latent").unwrap();
    // Without the version marker: a legacy file, scaled back as ComfyUI does.
    let legacy = dir.join("legacy.latent");
    framestream::model::save_safetensors(&legacy, &[("latent_tensor".into(), t.shape.clone(), t.data.clone())]).unwrap();
    let scaled = Latent::open(&legacy, None).unwrap();
    let data: Vec<f32> = t.data.iter().map(|v| v / 0.18215).collect();
    assert_eq!(scaled, Latent::from_tensor(&t.shape, &data, None).unwrap());
    // Any safetensors file with one 5-D tensor.
    let plain = dir.join("plain.safetensors");
    framestream::model::save_safetensors(
        &plain,
        &[("samples".into(), t.shape.clone(), t.data.clone()), ("note".into(), vec![2], vec![1.0, 2.0])],
    )
    .unwrap();
    assert_eq!(Latent::open(&plain, None).unwrap(), latent);
    let none = dir.join("none.safetensors");
    framestream::model::save_safetensors(&none, &[("x".into(), vec![4], vec![1.0; 4])]).unwrap();
    let err = Latent::open(&none, None).unwrap_err().to_string();
    assert!(err.contains("none.safetensors") && err.contains("5-D"), "{err}");
    let flat = dir.join("flat.latent");
    framestream::model::save_safetensors(&flat, &[("latent_tensor".into(), vec![16, 2, 2, 3], t.data.clone())]).unwrap();
    let err = Latent::open(&flat, None).unwrap_err().to_string();
    assert!(err.contains("flat.latent") && err.contains("5 dimensions"), "{err}");
    assert!(Latent::open(dir.join("missing.latent"), None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_precision_decodes_close_to_the_reference() {
    let reference = expected("v2");
    let want = reference.tensor("frames").unwrap().data;
    let model = LtxVae::load(fixture("v2.safetensors")).unwrap();
    let source = LtxVaeDecode::new(model, latent_of(&reference, "latent")).unwrap().noise_scale(0.0);
    let device = request(1).device().clone();
    for precision in [Precision::F16, Precision::BF16] {
        let decode = source.clone().precision(precision);
        // A device without the type says so when the weights are uploaded.
        if LtxVae::load(fixture("v2.safetensors")).unwrap().upload_to(&device, precision).is_err() {
            let err = collect(&decode, &request(4), 100).await.unwrap_err().to_string();
            assert!(err.contains(&precision.to_string()) && err.contains("f32"), "{err}");
            continue;
        }
        let (_, whole) = read_all(&decode, 9).await;
        let err = max_error(&whole, &want);
        assert!(err < 2e-2, "{precision}: max error {err}");
        let (_, chunked) = read_all(&decode, 2).await;
        assert!(chunked == whole, "{precision}: chunking changes frames");
    }
}

