//! Video files (any container and codec FFmpeg reads) never panic, whatever their bytes: the
//! header probe, the demuxer and the decoder thread end in frames or an error.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // FFmpeg probes by content, so one path serves every format.
    let path = std::env::temp_dir().join(format!("framestream-fuzz-{}.bin", std::process::id()));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    if written.is_ok() {
        let _ = framestream::video::decode_on_host(&path, 3);
    }
    let _ = std::fs::remove_file(&path);
});
