//! Where the tiles of a frame go and how their outputs are weighted (host-side geometry).
//!
//! Two schemes:
//! - **feather** — ComfyUI's `tiled_scale`: per axis, starts `0, T−O, 2(T−O), …` below
//!   `S − O`, the last tile shorter (not shifted back), each tile's output weighted by a
//!   separable ramp over `round(s·O)` pixels at every side and the sum divided by the summed
//!   weights. A frame no larger than one tile is one tile.
//! - **halo** — abutting cores, each read with `margin` (+ half the feather) pixels of real
//!   context on every side that is not an image edge; output weights ramp over `feather`
//!   input pixels across each interior core edge and sum to 1. Every pixel with weight lies at
//!   least `margin` inside its tile, so a margin of at least the model's receptive radius
//!   gives exactly the whole-frame result.

/// A rectangle: origin and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub y: usize,
    pub x: usize,
    pub h: usize,
    pub w: usize,
}

/// One tile: what it reads, where its output goes, and its output weights per row and column.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    pub input: Rect,
    pub output: Rect,
    pub weight_y: Vec<f32>,
    pub weight_x: Vec<f32>,
}

/// All tiles of a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct TilePlan {
    pub tiles: Vec<Tile>,
    pub out_h: usize,
    pub out_w: usize,
    /// 1 / summed weight per output pixel, when the weights do not already sum to 1.
    pub inverse: Option<Vec<f32>>,
}

/// One axis of the feather scheme: (start, length) of each tile's input.
fn feather_axis(size: usize, tile: usize, overlap: usize) -> Vec<(usize, usize)> {
    let step = tile.saturating_sub(overlap).max(1);
    let end = size.saturating_sub(overlap).max(1);
    (0..end).step_by(step).map(|p| (p, tile.min(size - p))).collect()
}

/// The feather ramp of a tile output of `len` pixels over `feather` pixels at both ends.
fn ramp(len: usize, feather: usize) -> Vec<f32> {
    if feather == 0 || feather >= len {
        return vec![1.0; len];
    }
    let r = |j: usize| if j < feather { (j + 1) as f32 / feather as f32 } else { 1.0 };
    (0..len).map(|j| r(j) * r(len - 1 - j)).collect()
}

/// ComfyUI's tiling of an `h × w` frame for a model of scale `s`.
pub fn feather(h: usize, w: usize, s: usize, tile: usize, overlap: usize) -> TilePlan {
    let (out_h, out_w) = (h * s, w * s);
    if h <= tile && w <= tile {
        let whole = Tile {
            input: Rect { y: 0, x: 0, h, w },
            output: Rect { y: 0, x: 0, h: out_h, w: out_w },
            weight_y: vec![1.0; out_h],
            weight_x: vec![1.0; out_w],
        };
        return TilePlan { tiles: vec![whole], out_h, out_w, inverse: None };
    }
    let f = overlap * s;
    let mut sums = vec![0.0f64; out_h * out_w];
    let mut tiles = Vec::new();
    for &(y, th) in &feather_axis(h, tile, overlap) {
        for &(x, tw) in &feather_axis(w, tile, overlap) {
            let output = Rect { y: y * s, x: x * s, h: th * s, w: tw * s };
            let (weight_y, weight_x) = (ramp(output.h, f), ramp(output.w, f));
            for (i, wy) in weight_y.iter().enumerate() {
                for (j, wx) in weight_x.iter().enumerate() {
                    sums[(output.y + i) * out_w + output.x + j] += f64::from(*wy) * f64::from(*wx);
                }
            }
            tiles.push(Tile { input: Rect { y, x, h: th, w: tw }, output, weight_y, weight_x });
        }
    }
    let inverse = sums.iter().map(|&s| if s > 0.0 { (1.0 / s) as f32 } else { 0.0 }).collect();
    TilePlan { tiles, out_h, out_w, inverse: Some(inverse) }
}

/// One axis of the halo scheme: (input start, input length, weights of the output pixels
/// `start·s ..`) per core. Sizes and origins are multiples of `multiple` (which must divide
/// `size`).
fn halo_axis(
    size: usize,
    s: usize,
    tile: usize,
    margin: usize,
    feather: usize,
    multiple: usize,
) -> Vec<(usize, usize, Vec<f32>)> {
    let cores = size.div_ceil(tile.max(1)).max(1);
    let core = size.div_ceil(cores).next_multiple_of(multiple);
    let grow = (margin + feather.div_ceil(2)).next_multiple_of(multiple);
    let half = feather as f64 / 2.0;
    let mut out = Vec::new();
    let mut a = 0;
    while a < size {
        let b = (a + core).min(size);
        let start = a.saturating_sub(grow);
        let end = (b + grow).min(size);
        let weights = (start * s..end * s)
            .map(|o| {
                let p = (o as f64 + 0.5) / s as f64;
                let mut w = 1.0f64;
                if b < size {
                    w *= if feather == 0 { f64::from(u8::from(p < b as f64)) } else { ((b as f64 + half - p) / feather as f64).clamp(0.0, 1.0) };
                }
                if a > 0 {
                    w *= if feather == 0 { f64::from(u8::from(p >= a as f64)) } else { ((p - (a as f64 - half)) / feather as f64).clamp(0.0, 1.0) };
                }
                w as f32
            })
            .collect();
        out.push((start, end - start, weights));
        a = b;
    }
    out
}

/// The halo tiling of an `h × w` frame (`multiple` must divide both).
pub fn halo(h: usize, w: usize, s: usize, tile: usize, margin: usize, feather: usize, multiple: usize) -> TilePlan {
    let mut tiles = Vec::new();
    for (y, th, weight_y) in halo_axis(h, s, tile, margin, feather, multiple) {
        for (x, tw, weight_x) in halo_axis(w, s, tile, margin, feather, multiple) {
            tiles.push(Tile {
                input: Rect { y, x, h: th, w: tw },
                output: Rect { y: y * s, x: x * s, h: th * s, w: tw * s },
                weight_y: weight_y.clone(),
                weight_x,
            });
        }
    }
    TilePlan { tiles, out_h: h * s, out_w: w * s, inverse: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(plan: &TilePlan) -> Vec<f64> {
        let mut sums = vec![0.0; plan.out_h * plan.out_w];
        for t in &plan.tiles {
            for (i, wy) in t.weight_y.iter().enumerate() {
                for (j, wx) in t.weight_x.iter().enumerate() {
                    sums[(t.output.y + i) * plan.out_w + t.output.x + j] += f64::from(wy * wx);
                }
            }
        }
        sums
    }

    #[test]
    fn feather_matches_comfyui_placement() {
        // 720p at tile 512, overlap 32: starts 0, 480 per axis (6 tiles), the last shorter.
        assert_eq!(feather_axis(720, 512, 32), vec![(0, 512), (480, 240)]);
        assert_eq!(feather_axis(1280, 512, 32), vec![(0, 512), (480, 512), (960, 320)]);
        let plan = feather(720, 1280, 4, 512, 32);
        assert_eq!(plan.tiles.len(), 6);
        assert_eq!(plan.tiles[5].output, Rect { y: 1920, x: 3840, h: 960, w: 1280 });
        // Every output pixel is covered.
        assert!(coverage(&plan).iter().all(|&s| s > 0.0));
        // A small frame is one tile with no blending.
        let one = feather(100, 80, 2, 512, 32);
        assert_eq!(one.tiles.len(), 1);
        assert!(one.inverse.is_none());
    }

    #[test]
    fn feather_ramps_cross_fade() {
        assert_eq!(ramp(8, 2), vec![0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]);
        assert_eq!(ramp(6, 3)[..3], [1.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(ramp(3, 4), vec![1.0; 3]);
    }

    #[test]
    fn halo_weights_sum_to_one_and_keep_the_margin() {
        for (size, tile, margin, feather, s, multiple) in
            [(100, 30, 5, 4, 2, 1), (97, 40, 3, 0, 4, 1), (128, 48, 8, 6, 2, 4), (20, 64, 4, 2, 1, 1)]
        {
            let plan = halo(size, size + 3 - (size + 3) % multiple, s, tile, margin, feather, multiple);
            for (p, sum) in coverage(&plan).iter().enumerate() {
                assert!((sum - 1.0).abs() < 1e-6, "{size}/{tile}: pixel {p} sums to {sum}");
            }
            for t in &plan.tiles {
                assert_eq!(t.input.y % multiple, 0);
                assert_eq!(t.input.h % multiple, 0, "{t:?}");
                // Weighted pixels lie ≥ margin inside the tile, unless at an image edge.
                for (i, wy) in t.weight_y.iter().enumerate() {
                    if *wy > 0.0 {
                        let p = t.input.y + i / s;
                        let inside_top = p - t.input.y;
                        let inside_bottom = t.input.y + t.input.h - 1 - p;
                        assert!(t.input.y == 0 || inside_top >= margin, "{t:?} row {i}");
                        assert!(t.input.y + t.input.h == size || inside_bottom >= margin, "{t:?} row {i}");
                    }
                }
            }
        }
    }
}
