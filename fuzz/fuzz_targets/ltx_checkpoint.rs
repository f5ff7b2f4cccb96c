//! LTX VAE checkpoints (0.9.x and 2.x) and latents (any safetensors bytes, any metadata config)
//! load or fail with an error, never a panic.
#![no_main]

use framestream::model::WeightFile;
use framestream::model::ltx::{Latent, LtxVae};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = WeightFile::from_bytes("fuzz.safetensors", data.to_vec()) else {
        return;
    };
    if let Ok(vae) = LtxVae::from_weights(file.clone()) {
        let config = vae.config();
        let _ = (config.frames(3), config.spatial_factor(), config.temporal_factor(), vae.parameters());
        let _ = (config.carried_state((22, 40)), config.version(), vae.description());
    }
    let names: Vec<String> = file.names().map(String::from).collect();
    for name in names {
        if let Ok(t) = file.tensor(&name) {
            let _ = Latent::from_tensor(&t.shape, &t.data, Some(0));
        }
    }
});
