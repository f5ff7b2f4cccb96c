//! Weight files (safetensors, PyTorch zip archives and their pickles) never panic and never
//! read past their bytes, whatever they hold.
#![no_main]

use framestream::model::WeightFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = WeightFile::from_bytes("fuzz.pth", data.to_vec()) {
        let names: Vec<String> = file.names().map(String::from).collect();
        for name in names {
            let _ = file.tensor(&name);
        }
    }
});
