//! The Wan 2.1 / 2.2 VAE decoder against diffusers' `AutoencoderKLWan` (tests/fixtures/wan,
//! made by tools/make_wan_fixtures.py), and the streaming guarantees: chunk invariance,
//! replay, one-frame latents, cancellation and bad inputs.

use std::path::PathBuf;

use framestream::model::WeightFile;
use framestream::model::ltx::Precision;
use framestream::model::wan::WanVersion;
use framestream::prelude::*;
use futures::StreamExt;

use crate::common::{self, latent_of, max_error, read_all, request, rewritten, temp_dir};

fn fixture(name: &str) -> PathBuf {
    common::fixture("wan", name)
}

fn expected(version: &str) -> WeightFile {
    WeightFile::open(fixture(&format!("{version}-expected.safetensors"))).unwrap()
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_versions_and_every_naming_match_diffusers() {
    let cases = [
        ("w21.safetensors", "w21", WanVersion::V21),
        ("w21.pth", "w21", WanVersion::V21),
        ("w21-diffusers", "w21", WanVersion::V21),
        ("w22.safetensors", "w22", WanVersion::V22),
        ("w22-diffusers", "w22", WanVersion::V22),
    ];
    for (vae, version, kind) in cases {
        let model = WanVae::load(fixture(vae)).unwrap();
        assert_eq!(model.config().version, kind, "{vae}");
        let reference = expected(version);
        for (latent, frames) in [("latent", "frames"), ("latent_t1", "frames_t1"), ("latent_long", "frames_long")] {
            let want = reference.tensor(frames).unwrap();
            let source = WanVaeDecode::new(model.clone(), latent_of(&reference, latent)).unwrap();
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_pieces_and_replays_give_the_same_frames() {
    for version in ["w21", "w22"] {
        let model = WanVae::load(fixture(&format!("{version}.safetensors"))).unwrap();
        let source = WanVaeDecode::new(model, latent_of(&expected(version), "latent_long")).unwrap();
        let (_, whole) = read_all(&source, 21).await;
        for n in [1, 4, 5, 9] {
            let (shapes, got) = read_all(&source, n).await;
            assert!(shapes.iter().all(|s| s[0] >= 1 && s[0] <= n));
            assert!(got == whole, "{version}: chunks of {n} differ by {}", max_error(&got, &whole));
        }
        // One latent frame per step at every level, and the largest pieces.
        for bytes in [1, 1 << 30] {
            let (_, got) = read_all(&source.clone().piece_bytes(bytes), 5).await;
            assert!(got == whole, "{version}: pieces of {bytes} bytes differ by {}", max_error(&got, &whole));
        }
        let (_, again) = read_all(&source, 21).await;
        assert!(again == whole, "{version}: a replay differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_mid_decode_releases_device_memory() {
    for version in ["w21", "w22"] {
        let model = WanVae::load(fixture(&format!("{version}.safetensors"))).unwrap();
        let source = WanVaeDecode::new(model, latent_of(&expected(version), "latent_long")).unwrap();
        let req = request(2);
        let before = req.device().memory_usage().unwrap();
        let mut stream = source.open(&req);
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.shape()[0], 2);
        drop(first);
        drop(stream);
        req.device().sync().await.unwrap();
        let after = req.device().memory_usage().unwrap();
        assert_eq!(after.bytes_in_use, before.bytes_in_use, "{version}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoder_says_what_it_recognised() {
    let model = WanVae::load(fixture("w22.safetensors")).unwrap();
    assert_eq!(model.config().spatial_factor(), 16);
    let source = WanVaeDecode::new(model, latent_of(&expected("w22"), "latent")).unwrap();
    let description = source.description();
    assert!(description.starts_with("Wan 2.2 VAE") && description.contains("3 latent frames of 3×2 → 9 frames of 48×32"), "{description}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checkpoints_and_latents_say_what_is_wrong() {
    let file = WeightFile::open(fixture("w21.safetensors")).unwrap();
    let target = "decoder.upsamples.3.residual.6.weight";
    let misshaped = rewritten(&file, "w21-misshaped.safetensors", |n, s, d| {
        Some(if n == target { (vec![s[0], s[1], 3, 3, 1], d[..s[0] * s[1] * 9].to_vec()) } else { (s, d) })
    });
    let err = WanVae::load(&misshaped).unwrap_err().to_string();
    assert!(err.contains(target) && err.contains("3, 3, 1]"), "{err}");
    let missing = "decoder.middle.1.proj.bias";
    let without = rewritten(&file, "w21-missing.safetensors", |n, s, d| (n != missing).then_some((s, d)));
    let err = WanVae::load(&without).unwrap_err().to_string();
    assert!(err.contains(missing), "{err}");
    // A head of another kernel size, and a head of 5 channels.
    let head = rewritten(&file, "w21-head.safetensors", |n, s, d| {
        Some(match n {
            "decoder.head.2.weight" => (vec![5, s[1], 3, 3, 3], vec![0.0; 5 * s[1] * 27]),
            "decoder.head.2.bias" => (vec![5], vec![0.0; 5]),
            _ => (s, d),
        })
    });
    let err = WanVae::load(&head).unwrap_err().to_string();
    assert!(err.contains("decoder.head.2") && err.contains("3 (Wan 2.1) or 12"), "{err}");
    // A gap in the module numbering: the modules after it are not silently skipped.
    let gap = rewritten(&file, "w21-gap.safetensors", |n, s, d| (!n.starts_with("decoder.upsamples.9.")).then_some((s, d)));
    let err = WanVae::load(&gap).unwrap_err().to_string();
    assert!(err.contains("decoder.upsamples.10.") && err.contains("gap"), "{err}");
    // Zero latent channels: refused at load, not at upload or decode.
    let empty = rewritten(&file, "w21-zero.safetensors", |n, s, d| {
        Some(match n {
            "conv2.weight" => (vec![0, 0, 1, 1, 1], vec![]),
            "conv2.bias" => (vec![0], vec![]),
            "decoder.conv1.weight" => (vec![s[0], 0, 3, 3, 3], vec![]),
            _ => (s, d),
        })
    });
    let err = WanVae::load(&empty).unwrap_err().to_string();
    assert!(err.contains("conv2 has 0 channels"), "{err}");
    // Not a Wan VAE: an LTX VAE, the reference frames, a folder that is not a diffusers one.
    let ltx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ltx/v2.safetensors");
    let err = WanVae::load(&ltx).unwrap_err().to_string();
    assert!(err.contains("not a Wan VAE"), "{err}");
    let err = LtxVae::load(fixture("w21.safetensors")).unwrap_err().to_string();
    assert!(err.contains("a Wan VAE, not an LTX VAE"), "{err}");
    let err = LtxVae::load(fixture("w22-diffusers")).unwrap_err().to_string();
    assert!(err.contains("a Wan VAE, not an LTX VAE"), "{err}");
    let err = WanVae::load(fixture("w21-expected.safetensors")).unwrap_err().to_string();
    assert!(err.contains("not a Wan VAE"), "{err}");
    let err = WanVae::load(temp_dir("wan-empty")).unwrap_err().to_string();
    assert!(err.contains("diffusers VAE folder"), "{err}");
    // A latent of the other version's channel count.
    let w21 = WanVae::load(fixture("w21.safetensors")).unwrap();
    let err = WanVaeDecode::new(w21, latent_of(&expected("w22"), "latent")).unwrap_err().to_string();
    assert!(err.contains("8 channels") && err.contains("Wan 2.1") && err.contains("4"), "{err}");
    // ComfyUI's .latent file holds the VAE-space latent as it is.
    assert_eq!(Latent::open(fixture("w21.latent"), None).unwrap(), latent_of(&expected("w21"), "latent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_precision_decodes_close_to_the_reference() {
    let reference = expected("w21");
    let want = reference.tensor("frames").unwrap().data;
    let model = WanVae::load(fixture("w21.safetensors")).unwrap();
    let source = WanVaeDecode::new(model.clone(), latent_of(&reference, "latent")).unwrap();
    let device = request(1).device().clone();
    for precision in [Precision::F16, Precision::BF16] {
        let decode = source.clone().precision(precision);
        if model.upload_to(&device, precision).is_err() {
            let err = collect(&decode, &request(4), 100).await.unwrap_err().to_string();
            assert!(err.contains(&precision.to_string()) && err.contains("f32"), "{err}");
            continue;
        }
        let (_, whole) = read_all(&decode, 9).await;
        let err = max_error(&whole, &want);
        assert!(err < 3e-2, "{precision}: max error {err}");
        let (_, chunked) = read_all(&decode, 2).await;
        assert!(chunked == whole, "{precision}: chunking changes frames");
    }
}

#[test]
fn the_released_architectures_have_their_parameter_counts() {
    use framestream::model::wan::WanConfig;
    // Decoder and conv2, as WAN_VAE.md §1 counts them from the references' constructors.
    for (version, tensors, parameters) in [(WanVersion::V21, 108, 73_295_603), (WanVersion::V22, 110, 555_051_580)] {
        let config = WanConfig::released(version);
        assert_eq!((config.tensors().len(), config.parameters()), (tensors, parameters), "{version:?}");
        assert_eq!(config.frames(251), 1001);
    }
    assert_eq!(WanConfig::released(WanVersion::V21).spatial_factor(), 8);
    assert_eq!(WanConfig::released(WanVersion::V22).spatial_factor(), 16);
    // The tiny fixtures are detected as the same graphs, narrower and with two resblocks a block.
    let tiny = WanVae::load(fixture("w22.safetensors")).unwrap();
    let released = WanConfig::released(WanVersion::V22);
    assert_eq!(tiny.config().blocks.len(), released.blocks.len());
    for (a, b) in tiny.config().blocks.iter().zip(&released.blocks) {
        assert_eq!((a.res.len(), a.shortcut, a.resample.as_ref().map(|r| r.time)), (2, b.shortcut, b.resample.as_ref().map(|r| r.time)));
    }
}
