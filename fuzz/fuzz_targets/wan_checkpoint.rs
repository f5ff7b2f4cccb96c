//! Wan VAE checkpoints (2.1 and 2.2, official or diffusers names) load or fail with an error,
//! never a panic; what a loaded one reports stays within its bounds.
#![no_main]

use framestream::model::WeightFile;
use framestream::model::wan::WanVae;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = WeightFile::from_bytes("fuzz.safetensors", data.to_vec()) else {
        return;
    };
    if let Ok(vae) = WanVae::from_weights(file) {
        let config = vae.config();
        let _ = (config.frames(251), config.spatial_factor(), config.carried_state((90, 160)));
        let _ = (vae.parameters(), vae.description());
    }
});
