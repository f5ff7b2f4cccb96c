//! The parsers of command-line values never panic, and what they accept prints back to a
//! value that parses to the same thing.
#![no_main]

use framestream::prelude::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(rate) = s.parse::<Rational>() {
        assert!(rate.num > 0 && rate.den > 0);
        assert_eq!(rate.to_string().parse::<Rational>().unwrap(), rate);
    }
    if let Ok(size) = s.parse::<FrameSize>() {
        assert!(size.width > 0 && size.height > 0);
        assert_eq!(size.to_string().parse::<FrameSize>().unwrap(), size);
    }
    let _ = s.parse::<DeviceKind>();
    let _ = s.parse::<Filter>();
});
