//! Weight names: the official single-file naming (optionally under the `vae.` prefix of
//! combined checkpoints) and diffusers' naming, mapped onto the official one.

use crate::model::weights::WeightFile;

/// The official view of a single file: tensors under `vae.` when the file is a combined
/// checkpoint (its transformer and text encoder are dropped), else the file as it is.
pub fn strip_vae_prefix(file: &WeightFile) -> WeightFile {
    if file.names().any(|n| n.starts_with("vae.decoder.")) {
        file.renamed(|n| n.strip_prefix("vae.").map(str::to_string))
    } else {
        file.clone()
    }
}

/// True when the decoder tensors use diffusers' names (`decoder.mid_block…`).
pub fn is_diffusers(file: &WeightFile) -> bool {
    file.names().any(|n| n.starts_with("decoder.mid_block."))
}

/// Renames a diffusers file's decoder tensors to the official names. `paths[k]` is the
/// diffusers module of official block `k` (`mid_block`, `up_blocks.0.upsamplers.0`, …).
/// Encoder tensors are dropped. The path is parsed, not substituted, so block numbers
/// cannot collide.
pub fn diffusers_to_official(file: &WeightFile, paths: &[String]) -> WeightFile {
    file.renamed(|name| official_name(name, paths))
}

fn official_name(name: &str, paths: &[String]) -> Option<String> {
    match name {
        "latents_mean" => return Some("per_channel_statistics.mean-of-means".into()),
        "latents_std" => return Some("per_channel_statistics.std-of-means".into()),
        _ => {}
    }
    let rest = name.strip_prefix("decoder.")?;
    if rest.starts_with("conv_in.") || rest.starts_with("conv_out.") || rest == "timestep_scale_multiplier" {
        return Some(name.to_string());
    }
    if let Some(tail) = rest.strip_prefix("time_embedder.") {
        return Some(format!("decoder.last_time_embedder.{tail}"));
    }
    if rest == "scale_shift_table" {
        return Some("decoder.last_scale_shift_table".into());
    }
    // The longest module path the name lies under.
    let (index, path) = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| rest.len() > p.len() && rest.starts_with(p.as_str()) && rest.as_bytes()[p.len()] == b'.')
        .max_by_key(|(_, p)| p.len())?;
    let tail = &rest[path.len() + 1..];
    let tail = if let Some(t) = tail.strip_prefix("resnets.") {
        format!("res_blocks.{t}")
    } else if let Some(t) = tail.strip_prefix("conv_shortcut.conv.") {
        format!("conv_shortcut.{t}")
    } else if let Some(t) = tail.strip_prefix("norm3.") {
        format!("norm3.norm.{t}")
    } else {
        tail.to_string()
    };
    Some(format!("decoder.up_blocks.{index}.{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffusers_names_map_by_path() {
        let paths: Vec<String> = ["mid_block", "up_blocks.0", "up_blocks.1.upsamplers.0", "up_blocks.1", "up_blocks.2.conv_in"]
            .map(String::from)
            .to_vec();
        let cases = [
            ("decoder.mid_block.resnets.3.conv1.conv.weight", "decoder.up_blocks.0.res_blocks.3.conv1.conv.weight"),
            ("decoder.mid_block.time_embedder.timestep_embedder.linear_1.bias", "decoder.up_blocks.0.time_embedder.timestep_embedder.linear_1.bias"),
            ("decoder.up_blocks.1.upsamplers.0.conv.conv.weight", "decoder.up_blocks.2.conv.conv.weight"),
            ("decoder.up_blocks.1.resnets.0.per_channel_scale1", "decoder.up_blocks.3.res_blocks.0.per_channel_scale1"),
            ("decoder.up_blocks.2.conv_in.conv_shortcut.conv.bias", "decoder.up_blocks.4.conv_shortcut.bias"),
            ("decoder.up_blocks.2.conv_in.norm3.weight", "decoder.up_blocks.4.norm3.norm.weight"),
            ("decoder.time_embedder.timestep_embedder.linear_2.weight", "decoder.last_time_embedder.timestep_embedder.linear_2.weight"),
            ("decoder.scale_shift_table", "decoder.last_scale_shift_table"),
            ("latents_std", "per_channel_statistics.std-of-means"),
            ("decoder.conv_out.conv.bias", "decoder.conv_out.conv.bias"),
        ];
        for (df, official) in cases {
            assert_eq!(official_name(df, &paths).as_deref(), Some(official), "{df}");
        }
        assert_eq!(official_name("encoder.conv_in.conv.weight", &paths), None);
        // LTX-2's diffusers graph: the fourth up block's upsampler is official block 7.
        let mut paths = vec!["mid_block".to_string()];
        for i in 0..4 {
            paths.extend([format!("up_blocks.{i}.upsamplers.0"), format!("up_blocks.{i}")]);
        }
        assert_eq!(
            official_name("decoder.up_blocks.3.upsamplers.0.conv.conv.bias", &paths).as_deref(),
            Some("decoder.up_blocks.7.conv.conv.bias")
        );
        assert_eq!(
            official_name("decoder.up_blocks.3.resnets.1.conv2.conv.weight", &paths).as_deref(),
            Some("decoder.up_blocks.8.res_blocks.1.conv2.conv.weight")
        );
        assert_eq!(official_name("decoder.up_blocks.7.resnets.0.conv1.conv.weight", &paths), None);
    }
}
