//! Upscaler files (RRDBNet and SRVGGNetCompact, any safetensors or .pth bytes): architecture
//! detection and the shape checks load a model or fail with an error, never a panic.
#![no_main]

use framestream::model::WeightFile;
use framestream::model::esrgan::UpscaleModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader is chosen by the bytes (zip or safetensors), not the name.
    let Ok(file) = WeightFile::from_bytes("fuzz.pth", data.to_vec()) else {
        return;
    };
    if let Ok(model) = UpscaleModel::from_weights(&file) {
        let _ = (model.scale(), model.in_channels(), model.out_channels(), model.size_multiple());
        let _ = (model.receptive_radius(), model.forward_bytes(2, 64, 64));
    }
});
