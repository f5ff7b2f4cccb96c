//! RRDBNet (ESRGAN, Real-ESRGAN, ESRGAN+): residual-in-residual dense blocks at low
//! resolution, then nearest ×2 + conv stages, an HR conv and the last conv.
//!
//! The dense blocks' concatenations are channel slices of one buffer per block: each of the
//! first four convs writes its growth channels after its inputs, and the fifth reads them all.

use framestream_kernels::{DeviceBuffer, Element};
use framestream_kernels::conv::{Activation, ConvWeights, Residual, Strategy};
use framestream_kernels::elementwise::combine;
use framestream_kernels::layout::{copy_channels, nearest, pixel_unshuffle};

use super::{MAX_BLOCKS, MAX_FEATURES, MAX_IMAGE_CHANNELS, MAX_SCALE, Planes, conv2d, upload_conv};
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::model::weights::WeightFile;

const LRELU: Activation = Activation::LeakyRelu(0.2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RrdbConfig {
    /// Image channels in (before pixel-unshuffle).
    pub in_nc: usize,
    pub out_nc: usize,
    /// Feature channels.
    pub nf: usize,
    /// Growth channels of the dense blocks.
    pub gc: usize,
    /// Residual-in-residual blocks.
    pub blocks: usize,
    /// Nearest ×2 + conv stages.
    pub upsamples: usize,
    /// Pixel-unshuffle factor of the input (Real-ESRGAN x2plus: 2).
    pub unshuffle: usize,
    /// ESRGAN+ blocks (a 1×1 conv added in each dense block).
    pub plus: bool,
}

/// Canonical names (BasicSR's) for the three layouts in the wild.
fn canonical_name(name: &str, layout: Layout, upsamples: usize) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let kind = *parts.last()?;
    match layout {
        Layout::BasicSr => Some(name.to_string()),
        Layout::Esrgan2019 => Some(match parts.as_slice() {
            ["RRDB_trunk", i, rdb, conv, _] => format!("body.{i}.{}.{conv}.{kind}", rdb.to_lowercase()),
            ["trunk_conv", _] => format!("conv_body.{kind}"),
            ["HRconv", _] => format!("conv_hr.{kind}"),
            [up, _] if up.starts_with("upconv") => format!("conv_up{}.{kind}", &up[6..]),
            _ => name.to_string(),
        }),
        Layout::Old => {
            let index: usize = parts.get(1)?.parse().ok()?;
            match parts.as_slice() {
                ["model", "0", _] => Some(format!("conv_first.{kind}")),
                ["model", "1", "sub", i, rdb, conv, "0", _] => {
                    Some(format!("body.{i}.{}.{conv}.{kind}", rdb.to_lowercase()))
                }
                ["model", "1", "sub", i, rdb, "conv1x1", _] => {
                    Some(format!("body.{i}.{}.conv1x1.{kind}", rdb.to_lowercase()))
                }
                ["model", "1", "sub", _, _] => Some(format!("conv_body.{kind}")),
                ["model", _, _] if index == 3 * upsamples + 2 => Some(format!("conv_hr.{kind}")),
                ["model", _, _] if index == 3 * upsamples + 4 => Some(format!("conv_last.{kind}")),
                ["model", _, _] if index.is_multiple_of(3) && index / 3 <= upsamples => {
                    Some(format!("conv_up{}.{kind}", index / 3))
                }
                _ => None,
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `model.0`, `model.1.sub.N.RDBr.convk.0`, … (ESRGAN's first release, ESRGAN+).
    Old,
    /// `conv_first`, `RRDB_trunk.N.RDBr.convk`, `trunk_conv`, `upconvN`, `HRconv`.
    Esrgan2019,
    /// `conv_first`, `body.N.rdbr.convk`, `conv_body`, `conv_upN`, `conv_hr` (BasicSR).
    BasicSr,
}

impl RrdbConfig {
    /// Recognises the three layouts; returns the configuration and the file with canonical
    /// (BasicSR) names.
    pub fn detect(file: &WeightFile) -> Result<Option<(Self, WeightFile)>> {
        let has = |n: &str| file.contains(n);
        let layout = if has("model.0.weight")
            && (has("model.1.sub.0.RDB1.conv1.0.weight") || has("model.1.sub.0.RDB1.conv1x1.weight"))
        {
            Layout::Old
        } else if has("conv_first.weight") && has("body.0.rdb1.conv1.weight") && has("conv_body.weight") && has("conv_last.weight") {
            Layout::BasicSr
        } else if has("conv_first.weight")
            && has("RRDB_trunk.0.RDB1.conv1.weight")
            && has("trunk_conv.weight")
            && has("conv_last.weight")
        {
            Layout::Esrgan2019
        } else {
            return Ok(None);
        };
        let bad = |message: String| Error::Weights { path: file.path().to_path_buf(), message };
        let upsamples = match layout {
            Layout::Old => {
                let last = file
                    .names()
                    .filter_map(|n| n.strip_prefix("model.")?.split('.').next()?.parse::<usize>().ok())
                    .max()
                    .unwrap_or(0);
                if last < 4 || (last - 4) % 3 != 0 {
                    return Err(bad(format!("an ESRGAN model whose last layer is model.{last}")));
                }
                (last - 4) / 3
            }
            Layout::Esrgan2019 => (1..).take_while(|j| has(&format!("upconv{j}.weight"))).count(),
            Layout::BasicSr => (1..).take_while(|j| has(&format!("conv_up{j}.weight"))).count(),
        };
        if upsamples > MAX_SCALE.ilog2() as usize {
            return Err(bad(format!("{upsamples} upsampling stages (a scale over {MAX_SCALE})")));
        }
        let canonical = file.renamed(|n| canonical_name(n, layout, upsamples));
        // Output and input channels of a 2-D convolution, both within `max`.
        let conv = |n: &str, max: usize| -> Result<(usize, usize)> {
            match canonical.shape(n) {
                Some(&[cout, cin, _, _]) if (1..=max).contains(&cout) && (1..=MAX_FEATURES).contains(&cin) => Ok((cout, cin)),
                Some(s) => Err(bad(format!("{n} has shape {s:?}: not a convolution of 1 to {max} outputs"))),
                None => Err(bad(format!("missing tensor {n}"))),
            }
        };
        let (nf, raw_in) = conv("conv_first.weight", MAX_FEATURES)?;
        let (out_nc, _) = conv("conv_last.weight", MAX_IMAGE_CHANNELS)?;
        let (gc, _) = conv("body.0.rdb1.conv1.weight", MAX_FEATURES)?;
        let blocks = canonical
            .names()
            .filter_map(|n| n.strip_prefix("body.")?.split('.').next()?.parse::<usize>().ok())
            .max()
            .map_or(0, |b| b + 1);
        if blocks > MAX_BLOCKS {
            return Err(bad(format!("{blocks} RRDB blocks (at most {MAX_BLOCKS})")));
        }
        let unshuffle = match raw_in / out_nc.max(1) {
            4 if raw_in % out_nc == 0 => 2,
            16 if raw_in % out_nc == 0 => 4,
            _ => 1,
        };
        if (1 << upsamples) < unshuffle {
            return Err(bad(format!("{upsamples} upsampling stages cannot undo an unshuffle by {unshuffle}")));
        }
        let plus = canonical.names().any(|n| n.contains(".conv1x1."));
        let config = Self { in_nc: raw_in / (unshuffle * unshuffle), out_nc, nf, gc, blocks, upsamples, unshuffle, plus };
        Ok(Some((config, canonical)))
    }

    pub fn scale(&self) -> usize {
        (1 << self.upsamples) / self.unshuffle
    }

    /// Input pixels: one per 3×3 conv at the input's resolution, scaled by the resolution
    /// each conv runs at (`15·blocks + 3.25` for ×4 models).
    pub fn receptive_radius(&self) -> f64 {
        let n = self.upsamples as i32;
        let low = 15.0 * self.blocks as f64 + 2.0;
        let stages: f64 = (1..=n).map(|k| 0.5f64.powi(k)).sum();
        let u = self.unshuffle as f64;
        u * (low + stages + 2.0 * 0.5f64.powi(n)) + (u - 1.0)
    }

    fn dense_convs(&self) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        for i in 0..self.blocks {
            for r in 1..=3 {
                for k in 1..=5 {
                    let cin = self.nf + (k - 1) * self.gc;
                    let cout = if k == 5 { self.nf } else { self.gc };
                    out.push((format!("body.{i}.rdb{r}.conv{k}"), cout, cin));
                }
            }
        }
        out
    }

    pub fn check(&self, file: &WeightFile) -> Result<()> {
        let (nf, c_in) = (self.nf, self.in_nc * self.unshuffle * self.unshuffle);
        let mut convs = vec![("conv_first".to_string(), nf, c_in), ("conv_body".to_string(), nf, nf)];
        convs.extend(self.dense_convs());
        convs.extend((1..=self.upsamples).map(|j| (format!("conv_up{j}"), nf, nf)));
        convs.push(("conv_hr".to_string(), nf, nf));
        convs.push(("conv_last".to_string(), self.out_nc, nf));
        for (name, cout, cin) in convs {
            file.tensor_shaped(&format!("{name}.weight"), &[cout, cin, 3, 3])?;
            file.tensor_shaped(&format!("{name}.bias"), &[cout])?;
        }
        if self.plus {
            for i in 0..self.blocks {
                for r in 1..=3 {
                    file.tensor_shaped(&format!("body.{i}.rdb{r}.conv1x1.weight"), &[self.gc, nf, 1, 1])?;
                }
            }
        }
        Ok(())
    }

    /// Peak bytes of a forward pass, and its largest buffer.
    pub fn forward_bytes(&self, n: usize, h: usize, w: usize) -> (usize, usize) {
        let u = self.unshuffle;
        let low = n * (h / u) * (w / u) * 4;
        let dense = self.nf + 4 * self.gc;
        let at_low = low * (self.in_nc * u * u + 4 * self.nf + 2 * dense + self.gc);
        let high = n * h * w * 4 * (1 << (2 * self.upsamples)) / (u * u);
        let at_high = high * (2 * self.nf + self.out_nc) + low * self.nf;
        (at_low.max(at_high), (low * dense).max(high * self.nf))
    }

    pub(super) fn upload<E: Element>(&self, file: &WeightFile, device: &Device) -> Result<RrdbWeights> {
        let nf = self.nf;
        let c_in = self.in_nc * self.unshuffle * self.unshuffle;
        let mut blocks = Vec::new();
        for i in 0..self.blocks {
            let mut rdbs = Vec::new();
            for r in 1..=3 {
                let mut convs = Vec::new();
                for k in 1..=5 {
                    let cin = nf + (k - 1) * self.gc;
                    let cout = if k == 5 { nf } else { self.gc };
                    convs.push(upload_conv::<E>(file, device, &format!("body.{i}.rdb{r}.conv{k}"), (cout, cin, 3), true)?);
                }
                let one = if self.plus {
                    Some(upload_conv::<E>(file, device, &format!("body.{i}.rdb{r}.conv1x1"), (self.gc, nf, 1), false)?)
                } else {
                    None
                };
                rdbs.push(Dense { convs, one });
            }
            blocks.push(rdbs);
        }
        Ok(RrdbWeights {
            config: self.clone(),
            first: upload_conv::<E>(file, device, "conv_first", (nf, c_in, 3), true)?,
            blocks,
            body: upload_conv::<E>(file, device, "conv_body", (nf, nf, 3), true)?,
            ups: (1..=self.upsamples)
                .map(|j| upload_conv::<E>(file, device, &format!("conv_up{j}"), (nf, nf, 3), true))
                .collect::<Result<_>>()?,
            hr: upload_conv::<E>(file, device, "conv_hr", (nf, nf, 3), true)?,
            last: upload_conv::<E>(file, device, "conv_last", (self.out_nc, nf, 3), true)?,
        })
    }
}

/// One residual dense block: five convs, and ESRGAN+'s 1×1 conv.
struct Dense {
    convs: Vec<ConvWeights>,
    one: Option<ConvWeights>,
}

pub struct RrdbWeights {
    config: RrdbConfig,
    first: ConvWeights,
    blocks: Vec<Vec<Dense>>,
    body: ConvWeights,
    ups: Vec<ConvWeights>,
    hr: ConvWeights,
    last: ConvWeights,
}

impl RrdbWeights {
    pub fn forward<E: Element>(
        &self,
        device: &Device,
        input: &DeviceBuffer,
        (n, h, w): (usize, usize, usize),
        strategy: Strategy,
    ) -> Result<DeviceBuffer> {
        let c = &self.config;
        let (u, nf, gc) = (c.unshuffle, c.nf, c.gc);
        let (mut lh, mut lw) = (h / u, w / u);
        let low = n * lh * lw;
        let unshuffled;
        let x = if u > 1 {
            unshuffled = device.alloc_elems::<E>(n * h * w * c.in_nc)?;
            with_client!(device, client => pixel_unshuffle::<_, E>(client, input, (n, h, w, c.in_nc), u, &unshuffled));
            Planes { buffer: &unshuffled, stride: c.in_nc * u * u }
        } else {
            Planes { buffer: input, stride: c.in_nc }
        };
        let dims = (n, lh, lw);
        let f0 = device.alloc_elems::<E>(low * nf)?;
        conv2d::<E>(device, &self.first, x, dims, Planes { buffer: &f0, stride: nf }, 0, Activation::None, None, strategy);

        // Residual-in-residual dense blocks.
        let stride = nf + 4 * gc;
        let dense = [device.alloc_elems::<E>(low * stride)?, device.alloc_elems::<E>(low * stride)?];
        let last_dense = device.alloc_elems::<E>(low * nf)?;
        let extra = if c.plus { Some(device.alloc_elems::<E>(low * gc)?) } else { None };
        let features = [device.alloc_elems::<E>(low * nf)?, device.alloc_elems::<E>(low * nf)?];
        let mut feat = &f0;
        for (i, block) in self.blocks.iter().enumerate() {
            with_client!(device, client => {
                copy_channels::<_, E>(client, feat, (nf, 0), &dense[0], (stride, 0), low, nf)
            });
            let mut cur = 0;
            for (r, rdb) in block.iter().enumerate() {
                let z = &dense[cur];
                for k in 0..4 {
                    let input = Planes { buffer: z, stride };
                    let output = Planes { buffer: z, stride };
                    let residual = match (k, &rdb.one, &extra) {
                        (1, Some(one), Some(extra)) => {
                            conv2d::<E>(device, one, Planes { buffer: z, stride }, dims, Planes { buffer: extra, stride: gc }, 0, Activation::None, None, strategy);
                            Some(Residual::dense(extra, gc, 1.0))
                        }
                        (3, Some(_), _) => Some(Residual { buffer: z, stride, offset: nf + gc, scale: 1.0, before_activation: false }),
                        _ => None,
                    };
                    conv2d::<E>(device, &rdb.convs[k], input, dims, output, nf + k * gc, LRELU, residual, strategy);
                }
                let residual = Some(Residual { buffer: z, stride, offset: 0, scale: 0.2, before_activation: false });
                if r < 2 {
                    let next = Planes { buffer: &dense[1 - cur], stride };
                    conv2d::<E>(device, &rdb.convs[4], Planes { buffer: z, stride }, dims, next, 0, Activation::None, residual, strategy);
                    cur = 1 - cur;
                } else {
                    let out = Planes { buffer: &last_dense, stride: nf };
                    conv2d::<E>(device, &rdb.convs[4], Planes { buffer: z, stride }, dims, out, 0, Activation::None, residual, strategy);
                }
            }
            let next = &features[i % 2];
            with_client!(device, client => combine::<_, E>(client, feat, Some((&last_dense, 0.2)), false, next));
            feat = next;
        }
        let trunk = device.alloc_elems::<E>(low * nf)?;
        let residual = Some(Residual::dense(&f0, nf, 1.0));
        conv2d::<E>(device, &self.body, Planes { buffer: feat, stride: nf }, dims, Planes { buffer: &trunk, stride: nf }, 0, Activation::None, residual, strategy);

        // Upsampling stages, then the HR conv and the last conv.
        let mut current = trunk;
        for up in &self.ups {
            let larger = device.alloc_elems::<E>(n * 4 * lh * lw * nf)?;
            with_client!(device, client => nearest::<_, E>(client, &current, (n, lh, lw, nf), 2, &larger));
            (lh, lw) = (2 * lh, 2 * lw);
            let out = device.alloc_elems::<E>(n * lh * lw * nf)?;
            conv2d::<E>(device, up, Planes { buffer: &larger, stride: nf }, (n, lh, lw), Planes { buffer: &out, stride: nf }, 0, LRELU, None, strategy);
            current = out;
        }
        let hr = device.alloc_elems::<E>(n * lh * lw * nf)?;
        conv2d::<E>(device, &self.hr, Planes { buffer: &current, stride: nf }, (n, lh, lw), Planes { buffer: &hr, stride: nf }, 0, LRELU, None, strategy);
        let out = device.alloc_elems::<E>(n * lh * lw * c.out_nc)?;
        conv2d::<E>(device, &self.last, Planes { buffer: &hr, stride: nf }, (n, lh, lw), Planes { buffer: &out, stride: c.out_nc }, 0, Activation::None, None, strategy);
        Ok(out)
    }
}
