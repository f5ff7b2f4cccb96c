//! Finds frames holding NaN or infinite values, so sinks can refuse them by frame number.
//!
//! Each frame is scanned by `LANES` threads striding through it (adjacent threads read adjacent
//! values); each writes one flag. Reading back `frames × LANES` flags is cheap next to a frame.

use cubecl::prelude::*;

use crate::DeviceBuffer;

/// Threads (and flags) per frame.
pub const LANES: usize = 1024;
const CUBE: u32 = 256;

#[cube(launch_unchecked)]
fn nonfinite_kernel(input: &Array<f32>, flags: &mut Array<u32>, frame_len: u32, first_frame: u32) {
    let lane = ABSOLUTE_POS_X as usize;
    let frame = (first_frame + ABSOLUTE_POS_Y) as usize;
    let frame_len = frame_len as usize;
    let base = frame * frame_len;
    let mut bad = 0u32;
    let mut i = lane;
    while i < frame_len {
        let v = input[base + i];
        if f32::is_nan(v) || f32::is_inf(v) {
            bad = 1u32;
        }
        i += LANES;
    }
    flags[frame * LANES + lane] = bad;
}

/// Writes into `flags` (`frames × LANES` words) a 1 for every lane of a frame that saw a NaN
/// or an infinity.
pub fn nonfinite<R: Runtime>(
    client: &ComputeClient<R>,
    input: &DeviceBuffer,
    frames: usize,
    frame_len: usize,
    flags: &DeviceBuffer,
) {
    assert_eq!(input.len, frames * frame_len, "nonfinite input size");
    assert_eq!(flags.len, frames * LANES, "nonfinite flags size");
    assert!(u32::try_from(frame_len).is_ok(), "frame over 2^32 values");
    let max_y = client.properties().hardware.max_cube_count.1 as usize;
    for first in (0..frames).step_by(max_y.max(1)) {
        let group = (frames - first).min(max_y) as u32;
        // SAFETY: lanes < LANES, frames < `frames`, reads stay inside each frame.
        unsafe {
            nonfinite_kernel::launch_unchecked(
                client,
                CubeCount::Static(LANES as u32 / CUBE, group, 1),
                CubeDim::new_1d(CUBE),
                input.arg(),
                flags.arg(),
                frame_len as u32,
                first as u32,
            );
        }
    }
}

/// The first frame (relative) with a set flag.
pub fn first_flagged_frame(flags: &[u32]) -> Option<usize> {
    flags.iter().position(|&f| f != 0).map(|i| i / LANES)
}

/// CPU reference of [`nonfinite`].
pub fn nonfinite_reference(input: &[f32], frames: usize, frame_len: usize) -> Vec<u32> {
    let mut flags = vec![0; frames * LANES];
    for f in 0..frames {
        for (i, v) in input[f * frame_len..(f + 1) * frame_len].iter().enumerate() {
            if !v.is_finite() {
                flags[f * LANES + i % LANES] = 1;
            }
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, client};

    #[test]
    fn matches_reference() {
        let client = client();
        let mut rng = Rng::new(13);
        for case in 0..8 {
            let frames = rng.range(1, 4);
            let frame_len = rng.range(1, 5000);
            let mut data = rng.vec_f32(frames * frame_len, 0.0, 1.0);
            for _ in 0..case {
                let at = rng.range(0, data.len() - 1);
                data[at] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][case % 3];
            }
            let input = DeviceBuffer::from_f32(&client, &data);
            let flags = DeviceBuffer::from_u32(&client, &vec![7; frames * LANES]);
            nonfinite(&client, &input, frames, frame_len, &flags);
            let got = u32::from_bytes(&client.read_one_unchecked(flags.handle)).to_vec();
            let want = nonfinite_reference(&data, frames, frame_len);
            assert_eq!(got, want, "case {case}");
            assert_eq!(first_flagged_frame(&got), first_flagged_frame(&want));
        }
    }
}
