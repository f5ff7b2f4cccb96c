//! Single-head self-attention within each frame (the Wan decoder's middle block), with an
//! online softmax: memory linear in the tokens, never the tokens² score matrix.
//!
//! Input is the packed `to_qkv` output `[frames, tokens, 3C]` (per token `q ‖ k ‖ v`, C
//! each); output `[frames, tokens, C]` with `o_i = Σ_j softmax_j(q_i·k_j / √C) v_j` over the
//! tokens of the same frame. A cube takes 8 queries × 32 lanes and walks the keys in tiles of
//! 32: the 32 scores of a query come from query and key slices staged in shared memory (64
//! channels at a time) meet in shared memory, every lane of a query updates the running maximum
//! and sum from them in the same order, and each lane keeps the output channels `lane + 32k` of
//! its query in registers. Every sum has a fixed order, so results are reproducible.

use cubecl::prelude::*;
use cubecl::server::CubeCountSelection;

use crate::{DeviceBuffer, Element};
use crate::launch::{product, to_u32};

const LANES: u32 = 32;
const QUERIES: u32 = 8;
/// Keys per tile: one per lane.
const KEYS: u32 = LANES;
/// Channels of a query/key slice staged in shared memory at a time.
const SLICE: u32 = 64;
/// A staged key row's stride (one more than the slice, so lanes reading their own key's
/// channel `d` fall in different banks).
const KEY_STRIDE: u32 = SLICE + 1;

#[cube(launch_unchecked)]
fn attention_kernel<F: Float>(
    qkv: &Array<F>,
    output: &mut Array<F>,
    frames: u32,
    tokens: u32,
    channels: u32,
    scale: f32,
    // Query blocks per frame: ⌈tokens / QUERIES⌉.
    blocks: u32,
    #[comptime] per_lane: u32,
) {
    let mut queries = SharedMemory::<f32>::new(comptime!((QUERIES * SLICE) as usize));
    let mut keys = SharedMemory::<f32>::new(comptime!((KEYS * KEY_STRIDE) as usize));
    let mut weights = SharedMemory::<f32>::new(comptime!((QUERIES * KEYS) as usize));
    let mut acc = Array::<f32>::new(comptime!(per_lane as usize));
    #[unroll]
    for k in 0..per_lane {
        acc[k as usize] = 0.0f32;
    }

    let cube = CUBE_POS as u32;
    let frame = cube / blocks;
    // Cubes past the last frame (the grid's spread) do nothing; every thread of a cube takes
    // the same branch, so the barriers below stay uniform.
    if frame < frames {
        let row = UNIT_POS_Y;
        let lane = UNIT_POS_X;
        let thread = row * LANES + lane;
        let query = (cube % blocks) * QUERIES + row;
        let live = query < tokens;
        let stride = 3 * channels;
        let frame_base = frame as usize * tokens as usize * stride as usize;
        let mut max = f32::new(-3.0e38);
        let mut sum = 0.0f32;

        let mut key0 = 0u32;
        while key0 < tokens {
            // Scores of this row's query against key `key0 + lane`, 64 channels at a time.
            let mut score = 0.0f32;
            let mut c0 = 0u32;
            while c0 < channels {
                #[unroll]
                for r in 0..comptime!(QUERIES * SLICE / (QUERIES * LANES)) {
                    let i = thread + r * QUERIES * LANES;
                    let q = i / SLICE;
                    let d = i % SLICE;
                    let token = (cube % blocks) * QUERIES + q;
                    let mut v = 0.0f32;
                    if token < tokens && c0 + d < channels {
                        v = f32::cast_from(qkv[frame_base + (token * stride + c0 + d) as usize]);
                    }
                    queries[i as usize] = v;
                }
                #[unroll]
                for r in 0..comptime!(KEYS * SLICE / (QUERIES * LANES)) {
                    let i = thread + r * QUERIES * LANES;
                    let j = i / SLICE;
                    let d = i % SLICE;
                    let token = key0 + j;
                    let mut v = 0.0f32;
                    if token < tokens && c0 + d < channels {
                        v = f32::cast_from(qkv[frame_base + (token * stride + channels + c0 + d) as usize]);
                    }
                    keys[(j * KEY_STRIDE + d) as usize] = v;
                }
                sync_cube();
                #[unroll]
                for d in 0..SLICE {
                    score += queries[(row * SLICE + d) as usize] * keys[(lane * KEY_STRIDE + d) as usize];
                }
                sync_cube();
                c0 += SLICE;
            }
            let key_live = key0 + lane < tokens;
            weights[(row * KEYS + lane) as usize] = select(key_live, score * scale, f32::new(-3.0e38));
            sync_cube();

            // Online softmax: every lane of the row reads the tile's 32 scores in the same
            // order, so all hold the same maximum, weights and sum; what was summed under the
            // old maximum is rescaled by `alpha`.
            let keys_here = select(tokens - key0 < KEYS, tokens - key0, KEYS);
            let mut tile_max = f32::new(-3.0e38);
            for j in 0..keys_here {
                let s = weights[(row * KEYS + j) as usize];
                tile_max = select(s > tile_max, s, tile_max);
            }
            let new_max = select(tile_max > max, tile_max, max);
            let alpha = f32::exp(max - new_max);
            let mut p = Array::<f32>::new(comptime!(KEYS as usize));
            let mut tile_sum = 0.0f32;
            for j in 0..keys_here {
                let e = f32::exp(weights[(row * KEYS + j) as usize] - new_max);
                p[j as usize] = e;
                tile_sum += e;
            }
            sum = sum * alpha + tile_sum;
            max = new_max;

            #[unroll]
            for k in 0..per_lane {
                let c = lane + k * LANES;
                let mut a = acc[k as usize] * alpha;
                if c < channels {
                    for j in 0..keys_here {
                        let v = f32::cast_from(qkv[frame_base + ((key0 + j) * stride + 2 * channels + c) as usize]);
                        a += p[j as usize] * v;
                    }
                }
                acc[k as usize] = a;
            }
            sync_cube();
            key0 += KEYS;
        }

        if live {
            let base = (frame * tokens + query) as usize * channels as usize;
            #[unroll]
            for k in 0..per_lane {
                let c = lane + k * LANES;
                if c < channels {
                    output[base + c as usize] = F::cast_from(acc[k as usize] / sum);
                }
            }
        }
    }
}

/// Per-frame single-head attention: `qkv` is `[frames, tokens, 3·channels]` (query, key and
/// value of each token, in that order), `out` `[frames, tokens, channels]`; scores are scaled
/// by `1/√channels`. Needs no memory besides its output.
pub fn attention<R: Runtime, E: Element>(
    client: &ComputeClient<R>,
    qkv: &DeviceBuffer,
    (frames, tokens, channels): (usize, usize, usize),
    out: &DeviceBuffer,
) {
    assert!(channels > 0, "attention needs channels");
    assert_eq!(qkv.len(), product(&[frames, tokens, channels, 3], "attention input"), "attention input size");
    assert_eq!(out.len(), product(&[frames, tokens, channels], "attention output"), "attention output size");
    if frames * tokens == 0 {
        return;
    }
    let blocks = tokens.div_ceil(QUERIES as usize);
    let cubes = product(&[frames, blocks], "attention cubes");
    let count = CubeCountSelection::new(client, to_u32(cubes, "attention cubes")).cube_count();
    let per_lane = to_u32(channels.div_ceil(LANES as usize), "attention channels");
    // SAFETY: every read is of a token below `tokens` of a frame below `frames` and a
    // channel below 3·channels, every write of a live query's channel below `channels`; the
    // sizes were checked above.
    unsafe {
        attention_kernel::launch_unchecked::<E, R>(
            client,
            count,
            CubeDim::new_2d(LANES, QUERIES),
            qkv.arg_of::<R, E>(client),
            out.arg_of::<R, E>(client),
            frames as u32,
            to_u32(tokens, "attention tokens"),
            channels as u32,
            1.0 / (channels as f32).sqrt(),
            blocks as u32,
            per_lane,
        );
    }
}

/// CPU reference of [`attention`], in f64.
pub fn attention_reference(qkv: &[f32], (frames, tokens, channels): (usize, usize, usize)) -> Vec<f64> {
    let stride = 3 * channels;
    let scale = 1.0 / (channels as f64).sqrt();
    let mut out = vec![0.0; frames * tokens * channels];
    for f in 0..frames {
        let token = |i: usize, part: usize| {
            let at = (f * tokens + i) * stride + part * channels;
            &qkv[at..at + channels]
        };
        for i in 0..tokens {
            let q = token(i, 0);
            let scores: Vec<f64> = (0..tokens)
                .map(|j| q.iter().zip(token(j, 1)).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() * scale)
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            let o = &mut out[(f * tokens + i) * channels..][..channels];
            for (j, w) in weights.iter().enumerate() {
                for (oc, &v) in o.iter_mut().zip(token(j, 2)) {
                    *oc += w / total * f64::from(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{Rng, assert_close, client, has_f16, poisoned, read_as_f32, rounded};

    /// `tolerance` for values in ±1; `large` for the large-score case, where an f32 score of
    /// some hundreds is itself only good to ~3e-5.
    fn check<E: Element>(cases: &[(usize, usize, usize, f64)], tolerance: f64, large: f64) {
        let client = client();
        let mut rng = Rng::new(61);
        for &(frames, tokens, channels, spread) in cases {
            let qkv = rounded::<E>(rng.vec_f32(frames * tokens * 3 * channels, -spread, spread));
            let input = DeviceBuffer::from_f32_as::<_, E>(&client, &qkv);
            let out = poisoned::<E>(&client, frames * tokens * channels);
            attention::<_, E>(&client, &input, (frames, tokens, channels), &out);
            let want = attention_reference(&qkv, (frames, tokens, channels));
            let what = format!("{frames} frames × {tokens} tokens × {channels} channels, values ±{spread}");
            let tolerance = if spread > 1.0 { large } else { tolerance };
            assert_close(&read_as_f32::<E>(&client, out.handle().clone()), &want, tolerance, &what);
        }
    }

    /// Token counts from one to many key tiles (1,000 tokens: 32 tiles, far past what one
    /// cube's shared memory holds), channel counts off the 32-lane and 64-channel slice
    /// grids, and large scores (±100 and beyond: a plain exp would overflow).
    const CASES: &[(usize, usize, usize, f64)] = &[
        (1, 1, 1, 1.0),
        (2, 7, 3, 1.0),
        (1, 33, 40, 1.0),
        (3, 65, 96, 1.0),
        (1, 300, 130, 1.0),
        (1, 1000, 64, 1.0),
        (2, 50, 16, 12.0),
    ];

    #[test]
    fn attention_matches_reference() {
        check::<f32>(CASES, 1e-5, 2e-4);
        if has_f16() {
            check::<half::f16>(CASES, 2e-2, 5e-2);
        }
    }

    #[test]
    fn frames_do_not_see_each_other() {
        // The same frame beside a different one gives the same output as alone.
        let client = client();
        let mut rng = Rng::new(62);
        let (tokens, channels) = (40, 24);
        let frame = rng.vec_f32(tokens * 3 * channels, -1.0, 1.0);
        let other = rng.vec_f32(tokens * 3 * channels, -1.0, 1.0);
        let run = |data: &[f32], frames: usize| {
            let input = DeviceBuffer::from_f32(&client, data);
            let out = poisoned::<f32>(&client, frames * tokens * channels);
            attention::<_, f32>(&client, &input, (frames, tokens, channels), &out);
            read_as_f32::<f32>(&client, out.handle().clone())
        };
        let alone = run(&frame, 1);
        let both = run(&[other, frame].concat(), 2);
        assert!(both[tokens * channels..] == alone[..], "a frame's output depends on another frame");
    }
}
