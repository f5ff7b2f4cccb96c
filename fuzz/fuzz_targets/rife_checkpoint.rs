//! RIFE checkpoints (every layout, `module.`-prefixed or not) load or fail with an error,
//! never a panic; what a loaded one reports stays within its bounds.
#![no_main]

use framestream::model::WeightFile;
use framestream::model::rife::RifeModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = WeightFile::from_bytes("fuzz.safetensors", data.to_vec()) else {
        return;
    };
    if let Ok(model) = RifeModel::from_weights(&file) {
        let config = model.config();
        let _ = (config.family(), &config.pyramid, config.multiple(), config.tensors().len());
        let _ = (model.size_multiple(0.25), model.size_multiple(4.0));
    }
});
