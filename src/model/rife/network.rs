//! An IFNet on a device: its weights rewritten for the stride-1 convolution kernel, and the
//! forward pass over a pair of frames.
//!
//! Transposed 4×4 convolutions run as 3×3 convolutions followed by a depth-to-space (fused
//! with the released pixel shuffle into one of 4), ResConv's `beta` is folded into its
//! weights, and its activation follows the residual sum in the convolution's epilogue.
//!
//! Per pair, two full-size buffers hold the blocks' inputs: `x` — both frames (warped after
//! the first block), their features (warped likewise) and the timestep plane — and `motion` —
//! the running flow (4), mask (1) and the features blocks pass on. Each block reads both
//! downscaled into one small buffer, whose channel order its first convolution's weights
//! were permuted to.

use framestream_kernels::conv::{Activation, ConvWeights, Residual, Strategy, transposed_4x4_as_shuffled};
use framestream_kernels::flow::{Scaling, Slice, blend, fill, pad, resize, warp};
use framestream_kernels::layout::{copy_channels, pixel_shuffle};
use framestream_kernels::{DeviceBuffer, Element};

use super::{LayerKind, RESIDUALS, RifeConfig};
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::model::esrgan::{Planes, conv2d};
use crate::model::weights::WeightFile;
use crate::model::{Precision, with_element};

const LEAKY: Activation = Activation::LeakyRelu(0.2);

/// A layer of the feature encoder on the device.
struct DeviceLayer {
    kind: LayerKind,
    weights: ConvWeights,
    cout: usize,
    activation: Activation,
}

/// A flow block on the device.
struct Block {
    /// Input channels (in the order of the downscaled buffer) and width.
    cin: usize,
    width: usize,
    /// The two stride-2 convolutions.
    conv0: [ConvWeights; 2],
    residuals: Vec<ConvWeights>,
    /// The transposed convolution as a 3×3 convolution to 16 × `used` channels.
    last: ConvWeights,
}

/// An IFNet's weights on one device, ready to run.
pub struct DeviceRife {
    config: RifeConfig,
    precision: Precision,
    strategy: Strategy,
    encoder: Vec<DeviceLayer>,
    blocks: Vec<Block>,
}

/// One frame as the network reads it: padded with zeros and clamped to [0, 1], and its
/// encoder features, in the model's element type.
pub struct Prepared {
    padded: DeviceBuffer,
    features: Option<DeviceBuffer>,
    /// Padded height and width.
    size: (usize, usize),
}

/// `[co][ci][k][k]` weights with their input channels reordered: new channel `b` reads old
/// channel `order[b]`.
fn permute_inputs(weights: &[f32], (cout, cin, taps): (usize, usize, usize), order: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(cout * order.len() * taps);
    for co in 0..cout {
        for &ci in order {
            let at = (co * cin + ci) * taps;
            out.extend_from_slice(&weights[at..at + taps]);
        }
    }
    out
}

fn upload<E: Element>(device: &Device, what: &str, weights: &[f32], bias: &[f32], shape: (usize, usize)) -> Result<ConvWeights> {
    device.check_buffer(weights.len() * size_of::<E>(), &format!("the weights of {what}"))?;
    let (cout, cin) = shape;
    Ok(with_client!(device, client => ConvWeights::upload::<_, E>(client, weights, Some(bias), None, (cout, cin, 1, 3))))
}

/// Grouped `[c][c / groups][3][3]` weights as dense `[c][c][3][3]` ones (zeros across groups).
fn dense(weights: &[f32], c: usize, groups: usize) -> Vec<f32> {
    if groups == 1 {
        return weights.to_vec();
    }
    let per = c / groups;
    let mut out = vec![0.0; c * c * 9];
    for co in 0..c {
        let first = co / per * per;
        for i in 0..per {
            let from = (co * per + i) * 9;
            out[(co * c + first + i) * 9..][..9].copy_from_slice(&weights[from..from + 9]);
        }
    }
    out
}

/// Channels each block's output keeps: flow, mask and the passed features.
fn used(config: &RifeConfig) -> usize {
    5 + config.passed
}

impl DeviceRife {
    pub(super) fn upload<E: Element>(config: &RifeConfig, file: &WeightFile, device: &Device) -> Result<Self> {
        let tensor = |name: String| file.tensor(&name).map(|t| t.data);
        let mut encoder = Vec::new();
        for layer in &config.encoder {
            let (w, b) = (tensor(format!("{}.weight", layer.prefix))?, tensor(format!("{}.bias", layer.prefix))?);
            let weights = match layer.kind {
                LayerKind::Strided => upload::<E>(device, &layer.prefix, &w, &b, (layer.cout, layer.cin))?.strided(),
                LayerKind::Plain => upload::<E>(device, &layer.prefix, &w, &b, (layer.cout, layer.cin))?,
                LayerKind::Transposed => {
                    let (w, b) = transposed_4x4_as_shuffled(&w, &b, (layer.cin, layer.cout));
                    upload::<E>(device, &layer.prefix, &w, &b, (4 * layer.cout, layer.cin))?
                }
            };
            encoder.push(DeviceLayer {
                kind: layer.kind,
                weights,
                cout: layer.cout,
                activation: if layer.leaky { LEAKY } else { Activation::None },
            });
        }
        let first = config.first_inputs();
        // The later blocks' inputs in the downscaled buffer: x's channels, then motion's flow,
        // mask and passed features; released: x's, mask, passed features, flow.
        let later_order: Vec<usize> = (0..first)
            .chain((0..4).map(|j| first + 1 + config.passed + j))
            .chain([first])
            .chain((0..config.passed).map(|j| first + 1 + j))
            .collect();
        let keep = used(config);
        let mut blocks = Vec::new();
        for (i, &(cin, c)) in config.blocks.iter().enumerate() {
            let p = format!("block{i}");
            let w0 = tensor(format!("{p}.conv0.0.0.weight"))?;
            let w0 = if i == 0 { w0 } else { permute_inputs(&w0, (c / 2, cin, 9), &later_order) };
            let conv0 = [
                upload::<E>(device, &p, &w0, &tensor(format!("{p}.conv0.0.0.bias"))?, (c / 2, cin))?.strided(),
                upload::<E>(device, &p, &tensor(format!("{p}.conv0.1.0.weight"))?, &tensor(format!("{p}.conv0.1.0.bias"))?, (c, c / 2))?
                    .strided(),
            ];
            let mut residuals = Vec::with_capacity(RESIDUALS);
            for j in 0..RESIDUALS {
                let q = format!("{p}.convblock.{j}");
                let beta = tensor(format!("{q}.beta"))?;
                let mut w = dense(&tensor(format!("{q}.conv.weight"))?, c, config.groups);
                let mut b = tensor(format!("{q}.conv.bias"))?;
                // conv(x)·β = conv with every output channel's weights and bias times β.
                for (co, &scale) in beta.iter().enumerate() {
                    w[co * c * 9..(co + 1) * c * 9].iter_mut().for_each(|v| *v *= scale);
                    b[co] *= scale;
                }
                residuals.push(upload::<E>(device, &q, &w, &b, (c, c))?);
            }
            let (w, b) = transposed_4x4_as_shuffled(
                &tensor(format!("{p}.lastconv.0.weight"))?,
                &tensor(format!("{p}.lastconv.0.bias"))?,
                (c, 4 * config.outputs),
            );
            // Transposed-convolution parity (py, px) of shuffle channel (ch, qy, qx) becomes
            // channel ch·16 + (2py + qy)·4 + 2px + qx of one shuffle by 4; unused channels go.
            let (mut last_w, mut last_b) = (vec![0.0; 16 * keep * c * 9], vec![0.0; 16 * keep]);
            for ch in 0..keep {
                for (qy, qx, py, px) in (0..16).map(|k| (k >> 3, (k >> 2) & 1, (k >> 1) & 1, k & 1)) {
                    let from = ((ch * 4 + qy * 2 + qx) * 4) + py * 2 + px;
                    let to = ch * 16 + (2 * py + qy) * 4 + 2 * px + qx;
                    last_w[to * c * 9..(to + 1) * c * 9].copy_from_slice(&w[from * c * 9..(from + 1) * c * 9]);
                    last_b[to] = b[from];
                }
            }
            let last = upload::<E>(device, &format!("{p}.lastconv"), &last_w, &last_b, (16 * keep, c))?;
            let cin = if i == 0 { first } else { first + keep };
            blocks.push(Block { cin, width: c, conv0, residuals, last });
        }
        Ok(Self { config: config.clone(), precision: Precision::of::<E>(), strategy: device.conv_strategy(), encoder, blocks })
    }

    /// Device bytes one pair's interpolation holds at its peak (the two prepared frames
    /// included) for frames padded to `ph × pw`.
    pub fn planned_bytes(&self, (ph, pw): (usize, usize), scale: f64) -> usize {
        let pixels = ph * pw;
        let features = self.config.features();
        let prepared = 3 * pixels * (3 + features);
        let full = pixels * (self.config.first_inputs() + used(&self.config));
        let encoder = self.encoder.iter().map(|l| pixels * (l.weights.cin + l.weights.cout)).max().unwrap_or(0);
        let blocks = self
            .blocks
            .iter()
            .zip(self.config.pyramid.iter().copied())
            .map(|(b, s)| {
                let small = (pixels as f64 / (s as f64 / scale).powi(2)) as usize;
                small * (2 * b.cin + used(&self.config)) + small / 4 * b.width + small / 16 * (3 * b.width + 16 * used(&self.config))
            })
            .max()
            .unwrap_or(0);
        (prepared + full + encoder.max(blocks)) * self.precision.bytes()
    }

    /// Elements of the largest buffer an interpolation of frames padded to `ph × pw` allocates.
    pub fn largest_buffer(&self, (ph, pw): (usize, usize), scale: f64) -> usize {
        let pixels = ph * pw;
        let full = pixels * self.config.first_inputs().max(used(&self.config));
        let encoder = self.encoder.iter().map(|l| pixels * l.weights.cin.max(l.weights.cout)).max().unwrap_or(0);
        let blocks = self
            .blocks
            .iter()
            .zip(self.config.pyramid.iter().copied())
            .map(|(b, s)| (pixels as f64 / (s as f64 / scale).powi(2)) as usize * b.cin.max(used(&self.config)).max(b.width / 8))
            .max()
            .unwrap_or(0);
        full.max(encoder).max(blocks)
    }

    /// Pads frame `index` of `frames` (f32 `[.., h, w, 3]`) to `ph × pw` and encodes it.
    pub fn prepare(&self, device: &Device, frames: &DeviceBuffer, index: usize, (h, w): (usize, usize), (ph, pw): (usize, usize)) -> Result<Prepared> {
        with_element!(self.precision, E => self.prepare_in::<E>(device, frames, index, (h, w), (ph, pw)))
    }

    fn prepare_in<E: Element>(
        &self,
        device: &Device,
        frames: &DeviceBuffer,
        index: usize,
        (h, w): (usize, usize),
        (ph, pw): (usize, usize),
    ) -> Result<Prepared> {
        let padded = device.alloc_elems::<E>(ph * pw * 3)?;
        with_client!(device, client => pad::<_, f32, E>(client, frames, index * h * w * 3, (1, h, w, 3), (ph, pw), true, &padded));
        let mut features = None;
        if !self.encoder.is_empty() {
            let (mut cur, mut ch, mut cw) = (padded.clone(), ph, pw);
            for layer in &self.encoder {
                let out = match layer.kind {
                    LayerKind::Strided => {
                        let (oh, ow) = layer.weights.output_size((ch, cw));
                        let out = device.alloc_elems::<E>(oh * ow * layer.cout)?;
                        self.conv::<E>(device, &layer.weights, &cur, (ch, cw), &out, layer.activation, None);
                        (ch, cw) = (oh, ow);
                        out
                    }
                    LayerKind::Plain => {
                        let out = device.alloc_elems::<E>(ch * cw * layer.cout)?;
                        self.conv::<E>(device, &layer.weights, &cur, (ch, cw), &out, layer.activation, None);
                        out
                    }
                    LayerKind::Transposed => {
                        let deep = device.alloc_elems::<E>(ch * cw * 4 * layer.cout)?;
                        self.conv::<E>(device, &layer.weights, &cur, (ch, cw), &deep, layer.activation, None);
                        let out = device.alloc_elems::<E>(ch * cw * 4 * layer.cout)?;
                        with_client!(device, client => pixel_shuffle::<_, E>(client, &deep, (1, ch, cw, 4 * layer.cout), 2, &out));
                        (ch, cw) = (2 * ch, 2 * cw);
                        out
                    }
                };
                cur = out;
            }
            if (ch, cw) != (ph, pw) {
                return Err(Error::shape(format!("the feature encoder turned {pw}x{ph} into {cw}x{ch}")));
            }
            features = Some(cur);
        }
        Ok(Prepared { padded, features, size: (ph, pw) })
    }

    /// A stride-1 3×3 convolution over one frame `h × w` whose input is dense.
    #[allow(clippy::too_many_arguments)]
    fn conv<E: Element>(
        &self,
        device: &Device,
        weights: &ConvWeights,
        input: &DeviceBuffer,
        (h, w): (usize, usize),
        out: &DeviceBuffer,
        activation: Activation,
        residual: Option<Residual>,
    ) {
        let (cin, cout) = (weights.cin, weights.cout);
        let planes = |buffer, stride| Planes { buffer, stride };
        conv2d::<E>(device, weights, planes(input, cin), (1, h, w), planes(out, cout), 0, activation, residual, self.strategy);
    }

    /// Interpolates at `t` between `a` and `b` with the pyramid at `scale`; the frame (the
    /// top-left `h × w`, f32) goes to frame `slot` of `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn interpolate(
        &self,
        device: &Device,
        a: &Prepared,
        b: &Prepared,
        t: f32,
        scale: f64,
        (h, w): (usize, usize),
        out: &DeviceBuffer,
        slot: usize,
    ) -> Result<()> {
        with_element!(self.precision, E => self.interpolate_in::<E>(device, a, b, t, scale, (h, w), out, slot))
    }

    #[allow(clippy::too_many_arguments)]
    fn interpolate_in<E: Element>(
        &self,
        device: &Device,
        a: &Prepared,
        b: &Prepared,
        t: f32,
        scale: f64,
        (h, w): (usize, usize),
        out: &DeviceBuffer,
        slot: usize,
    ) -> Result<()> {
        let (ph, pw) = a.size;
        let pixels = ph * pw;
        let features = self.config.features();
        let xc = self.config.first_inputs();
        let mc = used(&self.config);
        let x = device.alloc_elems::<E>(pixels * xc)?;
        let motion = device.alloc_elems::<E>(pixels * mc)?;
        with_client!(device, client => {
            copy_channels::<_, E>(client, &a.padded, (3, 0), &x, (xc, 0), pixels, 3);
            copy_channels::<_, E>(client, &b.padded, (3, 0), &x, (xc, 3), pixels, 3);
            if let (Some(fa), Some(fb)) = (&a.features, &b.features) {
                copy_channels::<_, E>(client, fa, (features, 0), &x, (xc, 6), pixels, features);
                copy_channels::<_, E>(client, fb, (features, 0), &x, (xc, 6 + features), pixels, features);
            }
            fill::<_, E>(client, Slice::at(&x, xc, xc - 1), pixels, 1, t);
        });
        let last = self.blocks.len() - 1;
        for ((i, block), level) in self.blocks.iter().enumerate().zip(self.config.pyramid.iter().copied()) {
            let s = level as f64 / scale;
            let (sh, sw) = ((ph as f64 / s).round() as usize, (pw as f64 / s).round() as usize);
            let c = block.width;
            let small = device.alloc_elems::<E>(sh * sw * block.cin)?;
            let half = device.alloc_elems::<E>(sh * sw / 4 * (c / 2))?;
            let (q, qw) = (sh / 4, sw / 4);
            let mut feat = device.alloc_elems::<E>(q * qw * c)?;
            let mut spare = device.alloc_elems::<E>(q * qw * c)?;
            let deep = device.alloc_elems::<E>(q * qw * 16 * mc)?;
            let shallow = device.alloc_elems::<E>(sh * sw * mc)?;
            let ratio = s as f32;
            with_client!(device, client => {
                resize::<_, E>(client, Slice::dense(&x, xc), (1, ph, pw), xc, Slice::at(&small, block.cin, 0), (sh, sw), (ratio, ratio), Scaling::NONE);
                if i > 0 {
                    let flow = Scaling { first: 0, count: 4, factor: 1.0 / ratio, added: 0 };
                    resize::<_, E>(client, Slice::dense(&motion, mc), (1, ph, pw), mc, Slice::at(&small, block.cin, xc), (sh, sw), (ratio, ratio), flow);
                }
            });
            self.conv::<E>(device, &block.conv0[0], &small, (sh, sw), &half, LEAKY, None);
            self.conv::<E>(device, &block.conv0[1], &half, (sh / 2, sw / 2), &feat, LEAKY, None);
            for residual in &block.residuals {
                let sum = Residual::dense(&feat, c, 1.0).before_activation();
                self.conv::<E>(device, residual, &feat, (q, qw), &spare, LEAKY, Some(sum));
                std::mem::swap(&mut feat, &mut spare);
            }
            self.conv::<E>(device, &block.last, &feat, (q, qw), &deep, Activation::None, None);
            let added = match i {
                0 => 0,
                _ if self.config.mask_accumulates => 5,
                _ => 4,
            };
            let up = Scaling { first: 0, count: 4, factor: s as f32, added };
            with_client!(device, client => {
                pixel_shuffle::<_, E>(client, &deep, (1, q, qw, 16 * mc), 4, &shallow);
                let inverse = (1.0 / s) as f32;
                resize::<_, E>(client, Slice::dense(&shallow, mc), (1, sh, sw), mc, Slice::dense(&motion, mc), (ph, pw), (inverse, inverse), up);
                if i < last {
                    let flow = |k| Slice::at(&motion, mc, k);
                    warp::<_, E>(client, Slice::dense(&a.padded, 3), 3, flow(0), Slice::at(&x, xc, 0), (1, ph, pw));
                    warp::<_, E>(client, Slice::dense(&b.padded, 3), 3, flow(2), Slice::at(&x, xc, 3), (1, ph, pw));
                    if let (Some(fa), Some(fb)) = (&a.features, &b.features) {
                        warp::<_, E>(client, Slice::dense(fa, features), features, flow(0), Slice::at(&x, xc, 6), (1, ph, pw));
                        warp::<_, E>(client, Slice::dense(fb, features), features, flow(2), Slice::at(&x, xc, 6 + features), (1, ph, pw));
                    }
                }
            });
        }
        with_client!(device, client => {
            blend::<_, E, f32>(client, &a.padded, &b.padded, Slice::at(&motion, mc, 0), (1, ph, pw, 3), (h, w), out, slot * h * w * 3)
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grouped_weights_become_dense_with_zeros_across_groups() {
        // c = 4 in two groups: output channel co reads input channels of its own group only.
        let grouped: Vec<f32> = (0..4 * 2 * 9).map(|i| i as f32 + 1.0).collect();
        let dense = super::dense(&grouped, 4, 2);
        for co in 0..4 {
            for ci in 0..4 {
                let tap = &dense[(co * 4 + ci) * 9..][..9];
                if co / 2 == ci / 2 {
                    assert_eq!(tap, &grouped[(co * 2 + ci % 2) * 9..][..9], "{co} ← {ci}");
                } else {
                    assert!(tap.iter().all(|&v| v == 0.0), "{co} ← {ci}");
                }
            }
        }
    }
}
