//! diffusers' `AutoencoderKLWan` names mapped onto the official ones (WAN_VAE.md §5.3). The
//! official flat index of a 2.1 module depends on how many resblocks each up block has, so
//! the mapping is built from the file's own blocks, not from fixed numbers.

use std::collections::BTreeMap;

use crate::model::weights::WeightFile;

/// Whether the file holds a Wan decoder in diffusers' naming (LTX's diffusers files have
/// `decoder.mid_block` too, but no RMS `norm1.gamma`).
pub fn is_diffusers(file: &WeightFile) -> bool {
    file.contains("decoder.mid_block.resnets.0.norm1.gamma")
}

/// `(block, resnets, upsampler path)` of every `decoder.up_blocks.i`.
fn up_blocks(file: &WeightFile) -> BTreeMap<usize, (usize, Option<&'static str>)> {
    let mut blocks: BTreeMap<usize, (usize, Option<&'static str>)> = BTreeMap::new();
    for name in file.names() {
        let Some(rest) = name.strip_prefix("decoder.up_blocks.") else { continue };
        let Some((i, tail)) = rest.split_once('.') else { continue };
        let Ok(i) = i.parse::<usize>() else { continue };
        let entry = blocks.entry(i).or_default();
        if let Some(j) = tail.strip_prefix("resnets.").and_then(|t| t.split_once('.')).and_then(|(j, _)| j.parse::<usize>().ok()) {
            entry.0 = entry.0.max(j + 1);
        } else if tail.starts_with("upsamplers.0.") {
            entry.1 = Some("upsamplers.0");
        } else if tail.starts_with("upsampler.") {
            entry.1 = Some("upsampler");
        }
    }
    blocks
}

/// The file under official names; encoder tensors are dropped.
pub fn diffusers_to_official(file: &WeightFile) -> WeightFile {
    let blocks = up_blocks(file);
    let nested = blocks.values().any(|(_, up)| *up == Some("upsampler"));
    // Official module path of each diffusers module path.
    let mut paths = vec![
        ("decoder.mid_block.resnets.0".to_string(), "decoder.middle.0".to_string()),
        ("decoder.mid_block.resnets.1".to_string(), "decoder.middle.2".to_string()),
        ("decoder.mid_block.attentions.0".to_string(), "decoder.middle.1".to_string()),
    ];
    let mut flat = 0;
    for (&i, &(resnets, upsampler)) in &blocks {
        for j in 0..resnets {
            let official = if nested { format!("decoder.upsamples.{i}.upsamples.{j}") } else { format!("decoder.upsamples.{}", flat + j) };
            paths.push((format!("decoder.up_blocks.{i}.resnets.{j}"), official));
        }
        flat += resnets;
        if let Some(up) = upsampler {
            let official = if nested { format!("decoder.upsamples.{i}.upsamples.{resnets}") } else { format!("decoder.upsamples.{flat}") };
            paths.push((format!("decoder.up_blocks.{i}.{up}"), official));
            flat += 1;
        }
    }
    file.renamed(|name| {
        match name {
            _ if name.starts_with("post_quant_conv.") => return Some(name.replacen("post_quant_conv", "conv2", 1)),
            _ if name.starts_with("decoder.conv_in.") => return Some(name.replacen("conv_in", "conv1", 1)),
            _ if name.starts_with("decoder.conv_out.") => return Some(name.replacen("conv_out", "head.2", 1)),
            "decoder.norm_out.gamma" => return Some("decoder.head.0.gamma".into()),
            _ => {}
        }
        let (from, to) = paths.iter().find(|(p, _)| name.len() > p.len() && name.starts_with(p.as_str()) && name.as_bytes()[p.len()] == b'.')?;
        let tail = &name[from.len() + 1..];
        if !from.contains(".resnets.") {
            // Upsamplers (`resample.1`, `time_conv`) and attention keep their names.
            return Some(format!("{to}.{tail}"));
        }
        let tail = [("norm1.", "residual.0."), ("conv1.", "residual.2."), ("norm2.", "residual.3."), ("conv2.", "residual.6."), ("conv_shortcut.", "shortcut.")]
            .iter()
            .find_map(|(d, o)| tail.strip_prefix(d).map(|t| format!("{o}{t}")))
            .unwrap_or_else(|| tail.to_string());
        Some(format!("{to}.{tail}"))
    })
}
