//! Counter-based random numbers: Philox-4x32-10.
//!
//! A value depends only on its key and counter, never on launch order or chunking, which is
//! what makes seeded noise identical however a video is split into chunks. The 32×32→64-bit
//! products are computed from 16-bit halves so the kernel needs only 32-bit integer arithmetic
//! (WGSL has no 64-bit integers), and the host reference is bit-identical.

use cubecl::prelude::*;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// High 32 bits of the 64-bit product `a * b`.
#[cube]
pub fn mul_hi32(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xFFFFu32;
    let a_hi = a >> 16u32;
    let b_lo = b & 0xFFFFu32;
    let b_hi = b >> 16u32;
    let lo_lo = a_lo * b_lo;
    let hi_lo = a_hi * b_lo;
    let lo_hi = a_lo * b_hi;
    let hi_hi = a_hi * b_hi;
    // Cannot overflow: at most 0xFFFF + 0xFFFF + 0xFFFE_0001.
    let cross = (lo_lo >> 16u32) + (hi_lo & 0xFFFFu32) + lo_hi;
    hi_hi + (hi_lo >> 16u32) + (cross >> 16u32)
}

/// Philox-4x32 with 10 rounds: four random words for counter `c` under key `k`.
#[cube]
pub fn philox4x32(
    c0: u32,
    c1: u32,
    c2: u32,
    c3: u32,
    k0: u32,
    k1: u32,
) -> (u32, u32, u32, u32) {
    let mut x0 = c0;
    let mut x1 = c1;
    let mut x2 = c2;
    let mut x3 = c3;
    let mut key0 = k0;
    let mut key1 = k1;
    #[unroll]
    for _ in 0..10u32 {
        let hi0 = mul_hi32(M0, x0);
        let lo0 = M0 * x0;
        let hi1 = mul_hi32(M1, x2);
        let lo1 = M1 * x2;
        let n0 = hi1 ^ x1 ^ key0;
        let n2 = hi0 ^ x3 ^ key1;
        x0 = n0;
        x1 = lo1;
        x2 = n2;
        x3 = lo0;
        key0 += W0;
        key1 += W1;
    }
    (x0, x1, x2, x3)
}

/// A uniform value in [0, 1) from the top 24 bits of a random word (exact in f32).
#[cube]
pub fn unit_f32(word: u32) -> f32 {
    f32::cast_from(word >> 8u32) * (1.0f32 / 16_777_216.0f32)
}

/// Host reference of [`philox4x32`].
pub fn philox4x32_reference(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut x0, mut x1, mut x2, mut x3] = counter;
    let [mut k0, mut k1] = key;
    for _ in 0..10 {
        let p0 = u64::from(M0) * u64::from(x0);
        let p1 = u64::from(M1) * u64::from(x2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0);
        k0 = k0.wrapping_add(W0);
        k1 = k1.wrapping_add(W1);
    }
    [x0, x1, x2, x3]
}

/// Host reference of [`unit_f32`].
pub fn unit_reference(word: u32) -> f64 {
    f64::from(word >> 8) / 16_777_216.0
}

/// The two key words of a 64-bit seed.
pub fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{cube_count, cube_dim};
    use crate::test_util::client;
    use crate::DeviceBuffer;

    #[cube(launch_unchecked)]
    fn philox_kernel(counters: &Array<u32>, out: &mut Array<u32>, k0: u32, k1: u32) {
        let i = ABSOLUTE_POS;
        if i < counters.len() / 4 {
            let (a, b, c, d) = philox4x32(
                counters[4 * i],
                counters[4 * i + 1],
                counters[4 * i + 2],
                counters[4 * i + 3],
                k0,
                k1,
            );
            out[4 * i] = a;
            out[4 * i + 1] = b;
            out[4 * i + 2] = c;
            out[4 * i + 3] = d;
        }
    }

    #[test]
    fn known_answer() {
        // Random123's published known-answer vectors for philox4x32-10.
        assert_eq!(
            philox4x32_reference([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_reference([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_reference(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn device_matches_reference() {
        let client = client();
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 32) as u32
        };
        let n = 1000;
        let counters: Vec<u32> = (0..4 * n).map(|_| next()).collect();
        let (k0, k1) = (next(), next());
        let input = DeviceBuffer::from_u32(&client, &counters);
        let out = DeviceBuffer::from_u32(&client, &vec![0xDEAD_BEEF; 4 * n]);
        unsafe {
            philox_kernel::launch_unchecked(
                &client,
                cube_count(&client, n),
                cube_dim(),
                input.arg(),
                out.arg(),
                k0,
                k1,
            );
        }
        let got = client.read_one_unchecked(out.handle().clone());
        let got = u32::from_bytes(&got);
        for i in 0..n {
            let want = philox4x32_reference(
                [counters[4 * i], counters[4 * i + 1], counters[4 * i + 2], counters[4 * i + 3]],
                [k0, k1],
            );
            assert_eq!(&got[4 * i..4 * i + 4], &want, "counter {i}");
        }
    }
}
