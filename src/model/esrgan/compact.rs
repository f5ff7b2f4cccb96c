//! SRVGGNetCompact: `body.0` conv + PReLU, K × (conv + PReLU), a conv to `out · s²`
//! channels, pixel shuffle, plus the nearest-upsampled input.

use framestream_kernels::{DeviceBuffer, Element};
use framestream_kernels::conv::{Activation, ConvWeights, Strategy};
use framestream_kernels::elementwise::combine;
use framestream_kernels::layout::{nearest, pixel_shuffle};

use super::{MAX_BLOCKS, MAX_FEATURES, MAX_IMAGE_CHANNELS, MAX_SCALE, Planes, conv2d};
use crate::device::{Device, with_client};
use crate::error::{Error, Result};
use crate::model::weights::WeightFile;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactConfig {
    pub in_nc: usize,
    pub out_nc: usize,
    /// Feature channels.
    pub nf: usize,
    /// Convolutions between the first and the last.
    pub convs: usize,
    pub scale: usize,
}

fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix("body.")?.split('.').next()?.parse().ok()
}

impl CompactConfig {
    /// Recognises the model from `body.0.weight` and `body.1.weight` (a PReLU).
    pub fn detect(file: &WeightFile) -> Result<Option<Self>> {
        let (Some(first), Some(prelu)) = (file.shape("body.0.weight"), file.shape("body.1.weight")) else {
            return Ok(None);
        };
        if first.len() != 4 || prelu.len() != 1 {
            return Ok(None);
        }
        let bad = |message: String| Error::Weights { path: file.path().to_path_buf(), message };
        let (nf, in_nc) = (first[0], first[1]);
        if !(1..=MAX_FEATURES).contains(&nf) || !(1..=MAX_IMAGE_CHANNELS).contains(&in_nc) {
            return Err(bad(format!(
                "body.0.weight {first:?}: a first convolution from {in_nc} to {nf} channels (1 to \
                 {MAX_IMAGE_CHANNELS} image channels, 1 to {MAX_FEATURES} features)"
            )));
        }
        let last = file.names().filter_map(index_of).max().unwrap_or(0);
        if last < 2 || last % 2 != 0 || last > 2 * MAX_BLOCKS + 2 {
            return Err(bad(format!(
                "compact model ending at body.{last}: expected an even index from 2 to {}",
                2 * MAX_BLOCKS + 2
            )));
        }
        let x = file
            .shape(&format!("body.{last}.bias"))
            .and_then(|s| s.first().copied())
            .ok_or_else(|| bad(format!("missing tensor body.{last}.bias")))?;
        let (out_nc, scale) = [in_nc, 3, 4, 1]
            .into_iter()
            .find_map(|c| {
                let q = x / c;
                let s = (q as f64).sqrt().round() as usize;
                (x % c == 0 && s * s == q && (1..=MAX_SCALE).contains(&s)).then_some((c, s))
            })
            .ok_or_else(|| bad(format!("body.{last} has {x} outputs: not channels × scale²")))?;
        Ok(Some(Self { in_nc, out_nc, nf, convs: (last - 2) / 2, scale }))
    }

    pub fn check(&self, file: &WeightFile) -> Result<()> {
        let mut names = vec![
            ("body.0.weight".to_string(), vec![self.nf, self.in_nc, 3, 3]),
            ("body.0.bias".to_string(), vec![self.nf]),
        ];
        for k in 0..=self.convs {
            if k > 0 {
                names.push((format!("body.{}.weight", 2 * k), vec![self.nf, self.nf, 3, 3]));
                names.push((format!("body.{}.bias", 2 * k), vec![self.nf]));
            }
            names.push((format!("body.{}.weight", 2 * k + 1), vec![self.nf]));
        }
        let last = 2 * self.convs + 2;
        let outputs = self.out_nc * self.scale * self.scale;
        names.push((format!("body.{last}.weight"), vec![outputs, self.nf, 3, 3]));
        names.push((format!("body.{last}.bias"), vec![outputs]));
        for (name, shape) in names {
            file.tensor_shaped(&name, &shape)?;
        }
        Ok(())
    }

    /// Peak bytes of a forward pass, and its largest buffer.
    pub fn forward_bytes(&self, n: usize, h: usize, w: usize) -> (usize, usize) {
        let area = n * h * w * 4;
        let s2 = self.scale * self.scale;
        let largest = (self.nf.max(self.out_nc * s2) * area).max(self.out_nc * s2 * area);
        // Two feature buffers, the last conv's output, the shuffled and the upsampled image.
        let peak = area * (self.in_nc + 2 * self.nf) + 3 * area * self.out_nc * s2;
        (peak, largest)
    }

    pub(super) fn upload<E: Element>(&self, file: &WeightFile, device: &Device) -> Result<CompactWeights> {
        let conv = |index: usize, cin: usize, cout: usize| -> Result<ConvWeights> {
            let w = file.tensor_shaped(&format!("body.{index}.weight"), &[cout, cin, 3, 3])?;
            let b = file.tensor_shaped(&format!("body.{index}.bias"), &[cout])?;
            let slopes = if index < 2 * self.convs + 2 {
                Some(file.tensor_shaped(&format!("body.{}.weight", index + 1), &[cout])?)
            } else {
                None
            };
            Ok(with_client!(device, client => ConvWeights::upload::<_, E>(
                client, &w.data, Some(&b.data), slopes.as_ref().map(|s| &s.data[..]), (cout, cin, 1, 3),
            )))
        };
        let mut convs = vec![conv(0, self.in_nc, self.nf)?];
        for k in 1..=self.convs {
            convs.push(conv(2 * k, self.nf, self.nf)?);
        }
        let last = conv(2 * self.convs + 2, self.nf, self.out_nc * self.scale * self.scale)?;
        Ok(CompactWeights { config: self.clone(), convs, last })
    }
}

pub struct CompactWeights {
    config: CompactConfig,
    /// The first convolution and the body's, each followed by its PReLU.
    convs: Vec<ConvWeights>,
    last: ConvWeights,
}

impl CompactWeights {
    pub fn forward<E: Element>(
        &self,
        device: &Device,
        input: &DeviceBuffer,
        (n, h, w): (usize, usize, usize),
        strategy: Strategy,
    ) -> Result<DeviceBuffer> {
        let c = &self.config;
        let pixels = n * h * w;
        let s = c.scale;
        // Features ping-pong between two buffers.
        let features = [device.alloc_elems::<E>(pixels * c.nf)?, device.alloc_elems::<E>(pixels * c.nf)?];
        let mut current: Option<usize> = None;
        for (i, weights) in self.convs.iter().enumerate() {
            let from = match current {
                None => Planes { buffer: input, stride: c.in_nc },
                Some(j) => Planes { buffer: &features[j], stride: c.nf },
            };
            let to = Planes { buffer: &features[i % 2], stride: c.nf };
            conv2d::<E>(device, weights, from, (n, h, w), to, 0, Activation::PRelu, None, strategy);
            current = Some(i % 2);
        }
        let shuffled_channels = c.out_nc * s * s;
        let last = device.alloc_elems::<E>(pixels * shuffled_channels)?;
        let from = Planes { buffer: &features[current.expect("at least one convolution")], stride: c.nf };
        let to = Planes { buffer: &last, stride: shuffled_channels };
        conv2d::<E>(device, &self.last, from, (n, h, w), to, 0, Activation::None, None, strategy);
        let out = device.alloc_elems::<E>(pixels * s * s * c.out_nc)?;
        with_client!(device, client => pixel_shuffle::<_, E>(client, &last, (n, h, w, shuffled_channels), s, &out));
        if c.in_nc != c.out_nc {
            return Ok(out);
        }
        let up = device.alloc_elems::<E>(pixels * s * s * c.in_nc)?;
        let sum = device.alloc_elems::<E>(pixels * s * s * c.out_nc)?;
        with_client!(device, client => {
            nearest::<_, E>(client, input, (n, h, w, c.in_nc), s, &up);
            combine::<_, E>(client, &out, Some((&up, 1.0)), false, &sum);
        });
        Ok(sum)
    }
}
