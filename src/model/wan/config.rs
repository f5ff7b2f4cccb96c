//! A Wan VAE decoder's architecture, read from its official tensor names and shapes (the
//! files carry no config): 2.1's flat `decoder.upsamples.N` or 2.2's nested
//! `decoder.upsamples.i.upsamples.j`, widths from the shapes, a Resample wherever
//! `resample.1` is, time upsampling wherever a `time_conv` is.

use crate::model::weights::WeightFile;

/// Bounds a file's shapes must keep to (the releases: 1024 channels, 4 up blocks, 3
/// upsamplers), so no size a hostile file declares can overflow.
const MAX_CHANNELS: usize = 1 << 16;
const MAX_BLOCKS: usize = 16;
const MAX_UPSAMPLERS: usize = 8;

/// The two released layouts, told apart by their names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WanVersion {
    /// Wan 2.1 (also Wan 2.2 A14B): flat `decoder.upsamples.N`, no shortcut around the up
    /// blocks, upsamplers halving the channels.
    V21,
    /// Wan 2.2 (TI2V-5B): nested `decoder.upsamples.i.upsamples.j` with a parameter-free
    /// `DupUp3D` shortcut around each up block that upsamples, upsamplers keeping the channels.
    V22,
}

/// A resblock: `residual.{0,2,3,6}` and, when the channels change, a 1×1×1 `shortcut`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResBlock {
    pub prefix: String,
    pub cin: usize,
    pub cout: usize,
}

/// An upsampler: optional causal (3,1,1) `time_conv` C→2C, nearest ×2 and the 3×3
/// `resample.1` C→C'.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resample {
    pub prefix: String,
    pub cin: usize,
    pub cout: usize,
    pub time: bool,
}

/// An up block: resblocks, then (blocks 0–2) a Resample; in 2.2 the block's input is added
/// to its output through a `DupUp3D` shortcut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpBlock {
    pub res: Vec<ResBlock>,
    pub resample: Option<Resample>,
    pub shortcut: bool,
}

impl UpBlock {
    /// The block's input channels (a detected block is never empty).
    pub fn cin(&self) -> usize {
        self.res.first().map_or_else(|| self.resample.as_ref().map_or(0, |r| r.cin), |r| r.cin)
    }

    /// The block's output channels.
    pub fn cout(&self) -> usize {
        match (&self.resample, self.res.last()) {
            (Some(r), _) => r.cout,
            (None, Some(r)) => r.cout,
            (None, None) => 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WanConfig {
    pub version: WanVersion,
    /// Latent channels z (`conv2`).
    pub latent_channels: usize,
    /// The middle's width (`decoder.conv1`'s output).
    pub width: usize,
    pub blocks: Vec<UpBlock>,
    /// The head's input channels (`decoder.head.0.gamma`).
    pub head_channels: usize,
    /// 1 (2.1) or 2 (2.2): the head's 3·p² channels are unpatchified.
    pub patch_size: usize,
}

fn shape<'a>(file: &'a WeightFile, name: &str) -> Result<&'a [usize], String> {
    file.shape(name).ok_or_else(|| format!("missing tensor {name}"))
}

/// `[out, in, …]` of a weight.
fn dims(file: &WeightFile, name: &str) -> Result<(usize, usize), String> {
    match shape(file, name)? {
        [o, i, ..] => Ok((*o, *i)),
        s => Err(format!("tensor {name} has shape {s:?}, expected a convolution weight")),
    }
}

fn has_prefix(file: &WeightFile, prefix: &str) -> bool {
    file.has_prefix(&format!("{prefix}."))
}

/// A resblock or a Resample at `prefix`: `Ok(None)` when nothing is there.
enum Part {
    Res(ResBlock),
    Resample(Resample),
}

fn part(file: &WeightFile, prefix: &str) -> Result<Option<Part>, String> {
    if !has_prefix(file, prefix) {
        return Ok(None);
    }
    if file.contains(&format!("{prefix}.residual.2.weight")) {
        let (cout, cin) = dims(file, &format!("{prefix}.residual.2.weight"))?;
        return Ok(Some(Part::Res(ResBlock { prefix: prefix.into(), cin, cout })));
    }
    if file.contains(&format!("{prefix}.resample.1.weight")) {
        let (cout, cin) = dims(file, &format!("{prefix}.resample.1.weight"))?;
        let time = file.contains(&format!("{prefix}.time_conv.weight"));
        return Ok(Some(Part::Resample(Resample { prefix: prefix.into(), cin, cout, time })));
    }
    Err(format!("{prefix} is neither a resblock (residual.2) nor an upsampler (resample.1)"))
}

/// Whether the file holds a Wan VAE decoder in the official naming.
pub fn is_official(file: &WeightFile) -> bool {
    file.contains("decoder.middle.0.residual.0.gamma")
}

impl WanConfig {
    /// The architecture of the official-named decoder in `file` (WAN_VAE.md §5.4).
    pub fn detect(file: &WeightFile) -> Result<Self, String> {
        let (z, z_in) = dims(file, "conv2.weight")?;
        let (width, z_conv) = dims(file, "decoder.conv1.weight")?;
        if z != z_in || z != z_conv {
            return Err(format!("conv2 maps {z_in} to {z} channels but decoder.conv1 takes {z_conv}"));
        }
        let nested = file.has_prefix("decoder.upsamples.0.upsamples.0.");
        let version = if nested { WanVersion::V22 } else { WanVersion::V21 };
        let mut blocks = Vec::new();
        if nested {
            for i in 0..=MAX_BLOCKS {
                let block = format!("decoder.upsamples.{i}");
                if !has_prefix(file, &block) {
                    break;
                }
                let mut up = UpBlock { res: Vec::new(), resample: None, shortcut: false };
                for j in 0..=MAX_BLOCKS {
                    match part(file, &format!("{block}.upsamples.{j}"))? {
                        None => break,
                        Some(Part::Res(r)) if up.resample.is_none() => up.res.push(r),
                        Some(Part::Resample(r)) if up.resample.is_none() => up.resample = Some(r),
                        Some(_) => return Err(format!("{block}: modules after its upsampler")),
                    }
                }
                // 2.2's up blocks with an upsampler add their input through DupUp3D.
                up.shortcut = up.resample.is_some();
                blocks.push(up);
            }
        } else {
            let mut up = UpBlock { res: Vec::new(), resample: None, shortcut: false };
            for n in 0..=MAX_BLOCKS * MAX_BLOCKS {
                match part(file, &format!("decoder.upsamples.{n}"))? {
                    None => break,
                    Some(Part::Res(r)) => up.res.push(r),
                    Some(Part::Resample(r)) => {
                        up.resample = Some(r);
                        blocks.push(std::mem::replace(&mut up, UpBlock { res: Vec::new(), resample: None, shortcut: false }));
                    }
                }
            }
            if !up.res.is_empty() {
                blocks.push(up);
            }
        }
        if blocks.is_empty() {
            return Err("no decoder.upsamples modules".into());
        }
        let head_channels = shape(file, "decoder.head.0.gamma")?.first().copied().unwrap_or(0);
        let head = shape(file, "decoder.head.2.weight")?;
        let patch_size = match head {
            [3, _, 3, 3, 3] => 1,
            [12, _, 3, 3, 3] => 2,
            [_, _, 3, 3, 3] => {
                return Err(format!("decoder.head.2 gives {} channels: expected 3 (Wan 2.1) or 12 (Wan 2.2, patch 2)", head[0]));
            }
            s => return Err(format!("decoder.head.2.weight has shape {s:?}: expected a 3×3×3 kernel [3 or 12, C, 3, 3, 3]")),
        };
        let config = Self { version, latent_channels: z, width, blocks, head_channels, patch_size };
        config.validate()?;
        config.check_chain()?;
        // A decoder tensor the graph does not read: a module after a gap in the numbering
        // would be skipped silently.
        let read: std::collections::BTreeSet<String> = config.tensors().into_iter().map(|(n, _)| n).collect();
        if let Some(extra) = file.names().find(|n| (n.starts_with("decoder.") || n.starts_with("conv2.")) && !read.contains(*n)) {
            return Err(format!("{extra} is not part of the decoder the other tensors describe (a gap in the module numbering?)"));
        }
        Ok(config)
    }

    /// Sizes within the bounds, no empty block.
    fn validate(&self) -> Result<(), String> {
        if self.blocks.is_empty() || self.blocks.len() > MAX_BLOCKS {
            return Err(format!("{} up blocks (1 to {MAX_BLOCKS})", self.blocks.len()));
        }
        let upsamplers = self.blocks.iter().filter(|b| b.resample.is_some()).count();
        if upsamplers > MAX_UPSAMPLERS {
            return Err(format!("{upsamplers} upsamplers (at most {MAX_UPSAMPLERS})"));
        }
        let mut widths = vec![("conv2", self.latent_channels), ("decoder.conv1", self.width), ("decoder.head", self.head_channels)];
        for (i, block) in self.blocks.iter().enumerate() {
            if block.res.is_empty() && block.resample.is_none() {
                return Err(format!("up block {i} has no modules"));
            }
            if block.res.len() > MAX_BLOCKS {
                return Err(format!("up block {i} has {} resblocks (at most {MAX_BLOCKS})", block.res.len()));
            }
            for r in &block.res {
                widths.extend([(r.prefix.as_str(), r.cin), (r.prefix.as_str(), r.cout)]);
            }
            if let Some(r) = &block.resample {
                widths.extend([(r.prefix.as_str(), r.cin), (r.prefix.as_str(), r.cout)]);
            }
        }
        match widths.iter().find(|(_, c)| *c == 0 || *c > MAX_CHANNELS) {
            Some((name, c)) => Err(format!("{name} has {c} channels (1 to {MAX_CHANNELS})")),
            None => Ok(()),
        }
    }

    /// The released decoder of `version` (WAN_VAE.md §2), three resblocks per up block: Wan
    /// 2.1 (z 16; middle and up blocks at 384, 384, 384, 192, 96 channels, as in
    /// `Wan2.1_VAE.pth`) or Wan 2.2 (z 48; 1024, 1024, 1024, 512, 256, as in `Wan2.2_VAE.pth`).
    pub fn released(version: WanVersion) -> Self {
        let res = |prefix: String, cin: usize, cout: usize| ResBlock { prefix, cin, cout };
        let resample = |prefix: String, cin: usize, cout: usize, time: bool| Some(Resample { prefix, cin, cout, time });
        match version {
            WanVersion::V21 => {
                let flat = |n: usize| format!("decoder.upsamples.{n}");
                // (input width, width, upsampler: time, output width)
                let levels = [(384, 384, Some((true, 192))), (192, 384, Some((true, 192))), (192, 192, Some((false, 96))), (96, 96, None)];
                let blocks = levels
                    .iter()
                    .enumerate()
                    .map(|(i, &(cin, c, up))| UpBlock {
                        res: (0..3).map(|j| res(flat(4 * i + j), if j == 0 { cin } else { c }, c)).collect(),
                        resample: up.and_then(|(time, cout)| resample(flat(4 * i + 3), c, cout, time)),
                        shortcut: false,
                    })
                    .collect();
                Self { version, latent_channels: 16, width: 384, blocks, head_channels: 96, patch_size: 1 }
            }
            WanVersion::V22 => {
                let nested = |i: usize, j: usize| format!("decoder.upsamples.{i}.upsamples.{j}");
                let levels = [(1024, 1024, Some(true)), (1024, 1024, Some(true)), (1024, 512, Some(false)), (512, 256, None)];
                let blocks = levels
                    .iter()
                    .enumerate()
                    .map(|(i, &(cin, c, time))| UpBlock {
                        res: (0..3).map(|j| res(nested(i, j), if j == 0 { cin } else { c }, c)).collect(),
                        resample: time.and_then(|time| resample(nested(i, 3), c, c, time)),
                        shortcut: time.is_some(),
                    })
                    .collect();
                Self { version, latent_channels: 48, width: 1024, blocks, head_channels: 256, patch_size: 2 }
            }
        }
    }

    /// Each module takes the channels the one before gives.
    fn check_chain(&self) -> Result<(), String> {
        let mut channels = self.width;
        for (i, block) in self.blocks.iter().enumerate() {
            for r in &block.res {
                if r.cin != channels {
                    return Err(format!("{} takes {} channels after a module giving {channels}", r.prefix, r.cin));
                }
                channels = r.cout;
            }
            if let Some(r) = &block.resample {
                let expected = if self.version == WanVersion::V21 { channels / 2 } else { channels };
                if r.cin != channels || r.cout != expected {
                    return Err(format!(
                        "{} maps {} to {} channels; after a module giving {channels} it should map {channels} to {expected}",
                        r.prefix, r.cin, r.cout
                    ));
                }
                channels = r.cout;
            }
            let factor = if block.resample.as_ref().is_some_and(|r| r.time) { 8 } else { 4 };
            if block.shortcut && (block.cout() * factor) % block.cin() != 0 {
                return Err(format!("up block {i}: {} channels do not repeat into {}", block.cin(), block.cout()));
            }
        }
        if channels != self.head_channels {
            return Err(format!("decoder.head takes {} channels after a module giving {channels}", self.head_channels));
        }
        Ok(())
    }

    /// Every tensor the decoder reads, with its shape.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut conv = |name: &str, shape: Vec<usize>| {
            out.push((format!("{name}.bias"), vec![shape[0]]));
            out.push((format!("{name}.weight"), shape));
        };
        let (z, c) = (self.latent_channels, self.width);
        conv("conv2", vec![z, z, 1, 1, 1]);
        conv("decoder.conv1", vec![c, z, 3, 3, 3]);
        let mut res = vec![
            ResBlock { prefix: "decoder.middle.0".into(), cin: c, cout: c },
            ResBlock { prefix: "decoder.middle.2".into(), cin: c, cout: c },
        ];
        res.extend(self.blocks.iter().flat_map(|b| b.res.iter().cloned()));
        for r in &res {
            conv(&format!("{}.residual.2", r.prefix), vec![r.cout, r.cin, 3, 3, 3]);
            conv(&format!("{}.residual.6", r.prefix), vec![r.cout, r.cout, 3, 3, 3]);
            if r.cin != r.cout {
                conv(&format!("{}.shortcut", r.prefix), vec![r.cout, r.cin, 1, 1, 1]);
            }
        }
        conv("decoder.middle.1.to_qkv", vec![3 * c, c, 1, 1]);
        conv("decoder.middle.1.proj", vec![c, c, 1, 1]);
        for r in self.blocks.iter().filter_map(|b| b.resample.as_ref()) {
            conv(&format!("{}.resample.1", r.prefix), vec![r.cout, r.cin, 3, 3]);
            if r.time {
                conv(&format!("{}.time_conv", r.prefix), vec![2 * r.cin, r.cin, 3, 1, 1]);
            }
        }
        let h = self.head_channels;
        conv("decoder.head.2", vec![3 * self.patch_size * self.patch_size, h, 3, 3, 3]);
        for r in &res {
            out.push((format!("{}.residual.0.gamma", r.prefix), vec![r.cin, 1, 1, 1]));
            out.push((format!("{}.residual.3.gamma", r.prefix), vec![r.cout, 1, 1, 1]));
        }
        out.push(("decoder.middle.1.norm.gamma".into(), vec![c, 1, 1]));
        out.push(("decoder.head.0.gamma".into(), vec![h, 1, 1, 1]));
        out
    }

    /// Parameters of the decoder and `conv2`.
    pub fn parameters(&self) -> usize {
        self.tensors().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// "Wan 2.1" or "Wan 2.2".
    pub fn version_name(&self) -> &'static str {
        match self.version {
            WanVersion::V21 => "Wan 2.1",
            WanVersion::V22 => "Wan 2.2",
        }
    }

    /// Elements the decode carries between chunks at a `(height, width)` latent: two frames
    /// of every cached convolution's input (WAN_VAE.md §4.4).
    pub fn carried_state(&self, (height, width): (usize, usize)) -> usize {
        // In u128: any validated config times any latent side below 2^32 fits.
        let n = |v: usize| v as u128;
        let mut pixels = n(height) * n(width);
        // conv1's input, and the middle's two resblocks (two cached convolutions each).
        let mut values = pixels * n(self.latent_channels + 4 * self.width);
        for block in &self.blocks {
            values += pixels * block.res.iter().map(|r| n(r.cin + r.cout)).sum::<u128>();
            if let Some(r) = &block.resample {
                if r.time {
                    values += pixels * n(r.cin);
                }
                pixels *= 4;
            }
        }
        usize::try_from(2 * (values + pixels * n(self.head_channels))).unwrap_or(usize::MAX)
    }

    /// Pixels per latent pixel along each side: 2 per upsampler, times the patch.
    pub fn spatial_factor(&self) -> usize {
        let ups = self.blocks.iter().filter(|b| b.resample.is_some()).count();
        (1 << ups) * self.patch_size
    }

    /// Frames decoded from `latent_frames`: each time upsampler maps F → 2F − 1.
    pub fn frames(&self, latent_frames: usize) -> usize {
        let times = self.blocks.iter().filter(|b| b.resample.as_ref().is_some_and(|r| r.time)).count();
        (0..times).fold(latent_frames, |f, _| (2 * f).saturating_sub(1))
    }
}
