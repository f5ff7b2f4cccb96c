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
