#!/usr/bin/env python3
"""Builds the LTX-Video VAE decoder fixtures under tests/fixtures/ltx/.

For each decoder layout (v0 = 0.9.0, v1 = 0.9.1, v2 = 0.9.5+), a tiny random-weight model is
built with diffusers' `AutoencoderKLLTXVideo` (same block graph as the releases, narrow
channels), its weights rounded to the dtype they are stored in, and saved

  * in the official single-file naming, with the config in the safetensors metadata
    (`__metadata__["config"] = {"vae": {...}}`), as the releases and ComfyUI write it;
  * for v0 and v2 also as a diffusers folder (`config.json` + `diffusion_pytorch_model.safetensors`).

The reference frames are the diffusers decoder's output in float64, mapped to [0, 1]:
`clamp((decoder(un_normalize(mix(latent)), timestep) + 1) / 2, 0, 1)`. The decode noise ε of
`mix` and v1's injected noise planes are drawn from the same counter-based generator
framestream uses (Philox-4x32-10, re-implemented below), so parity holds with noise on.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch diffusers safetensors numpy
    /tmp/venv/bin/python tools/make_ltx_fixtures.py

When the LTX-Video reference package (`ltx_video`) is importable (e.g. PYTHONPATH pointing at a
checkout of Lightricks/LTX-Video), each official file is also decoded by its `Decoder`, built
from the metadata config alone, and must match the diffusers frames (< 1e-5).

Frames are channel-last f32 `[frames, height, width, 3]`; latents are `[1, C, T, h, w]`.
"""
import json
import os
import re
from contextlib import contextmanager

import numpy as np
import torch
from diffusers import AutoencoderKLLTXVideo
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "ltx")

LATENT_CHANNELS = 16
TIMESTEP = 0.05
NOISE_SCALE = 0.025

# ---------------------------------------------------------------------------------------------
# The counter-based generator (must match framestream-kernels `rng` and `noise`).

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox(c0, c1, c2, c3, seed):
    """Philox-4x32-10 over arrays of counters; key = the seed's low and high words."""
    x = [np.asarray(c, dtype=np.uint64) & MASK for c in (c0, c1, c2, c3)]
    x = list(np.broadcast_arrays(*x))
    k0, k1 = seed & MASK, (seed >> 32) & MASK
    for _ in range(10):
        p0 = np.uint64(M0) * x[0]
        p1 = np.uint64(M1) * x[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK)
        x = [hi1 ^ x[1] ^ np.uint64(k0), lo1, hi0 ^ x[3] ^ np.uint64(k1), lo0]
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return x


def gaussian(seed, x, y, c, frame):
    """Box–Muller on the top 24 bits of words 0 and 1."""
    w = philox(x, y, c, frame, seed)
    u1 = ((w[0] >> np.uint64(8)).astype(np.float64) + 1.0) / 16777216.0
    u2 = (w[1] >> np.uint64(8)).astype(np.float64) / 16777216.0
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def latent_noise(seed, channels, frames, h, w):
    """ε[c, t, y, x] with counter (x, y, c, t)."""
    c, t, y, x = np.meshgrid(np.arange(channels), np.arange(frames), np.arange(h), np.arange(w), indexing="ij")
    return gaussian(seed, x, y, c, t)


PLANE_FRAME = 0xFFFFFFFF


def plane_channel(block, resblock, slot):
    return 0x80000000 | (block << 16) | (resblock << 1) | slot


def noise_plane(seed, block, resblock, slot, h, w):
    """v1's injected noise: one plane per (block, resblock, slot), shared by channels and frames."""
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return gaussian(seed, x, y, plane_channel(block, resblock, slot), PLANE_FRAME)


# ---------------------------------------------------------------------------------------------
# Tiny models. `decoder_blocks` is the official description (pixel side first); the diffusers
# config describes the same graph.

VERSIONS = {
    "v0": dict(
        official={
            "blocks": [
                ["res_x", 2], ["compress_all", 1], ["res_x_y", 1], ["res_x", 1], ["compress_all", 1],
                ["res_x_y", 1], ["res_x", 1], ["compress_all", 1], ["res_x", 1], ["res_x", 2],
            ],
            "decoder_base_channels": 4,
        },
        diffusers=dict(
            decoder_block_out_channels=(4, 8, 16, 16),
            decoder_layers_per_block=(2, 1, 1, 1, 2),
            decoder_spatio_temporal_scaling=(True, True, True, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1),
            timestep_conditioning=False,
        ),
        dtype=torch.float32,
    ),
    "v1": dict(
        official={
            "decoder_blocks": [
                ["res_x", {"num_layers": 2, "inject_noise": True}],
                ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 1, "inject_noise": True}],
                ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 1, "inject_noise": True}],
                ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 3, "inject_noise": False}],
            ],
            "decoder_base_channels": 4,
            "timestep_conditioning": True,
        },
        diffusers=dict(
            decoder_block_out_channels=(8, 16, 32),
            decoder_layers_per_block=(2, 1, 1, 3),
            decoder_spatio_temporal_scaling=(True, True, True),
            decoder_inject_noise=(True, True, True, False),
            upsample_residual=(True, True, True),
            upsample_factor=(2, 2, 2),
            timestep_conditioning=True,
        ),
        dtype=torch.float16,
    ),
    "v2": dict(
        official={
            "decoder_blocks": [
                ["res_x", {"num_layers": 2, "inject_noise": False}],
                ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 1, "inject_noise": False}],
                ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 1, "inject_noise": False}],
                ["compress_all", {"residual": True, "multiplier": 2}],
                ["res_x", {"num_layers": 2, "inject_noise": False}],
            ],
            "decoder_base_channels": 4,
            "timestep_conditioning": True,
        },
        diffusers=dict(
            decoder_block_out_channels=(8, 16, 32),
            decoder_layers_per_block=(2, 1, 1, 2),
            decoder_spatio_temporal_scaling=(True, True, True),
            decoder_inject_noise=(False, False, False, False),
            upsample_residual=(True, True, True),
            upsample_factor=(2, 2, 2),
            timestep_conditioning=True,
        ),
        dtype=torch.bfloat16,
    ),
}


def official_config(version, padding):
    cfg = {
        "_class_name": "CausalVideoAutoencoder",
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": LATENT_CHANNELS,
        "scaling_factor": 1.0,
        "norm_layer": "pixel_norm",
        "patch_size": 4,
        "latent_log_var": "uniform",
        "use_quant_conv": False,
        "causal_decoder": False,
    }
    cfg.update(VERSIONS[version]["official"])
    if padding is not None:
        cfg["spatial_padding_mode"] = padding
    return cfg


def build(version, seed):
    spec = VERSIONS[version]
    torch.manual_seed(seed)
    vae = AutoencoderKLLTXVideo(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        **spec["diffusers"],
    ).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "per_channel_scale" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif name.endswith("timestep_scale_multiplier"):
                p.fill_(731.0)
        vae.latents_mean.copy_(torch.randn(LATENT_CHANNELS, generator=gen) * 0.3)
        vae.latents_std.copy_(torch.rand(LATENT_CHANNELS, generator=gen) + 0.5)
        calibrate(vae, seed)
        # Round every weight to the dtype the files store, so f32 and bf16/f16 files agree.
        for t in list(vae.parameters()) + list(vae.buffers()):
            t.copy_(t.to(spec["dtype"]).to(torch.float32))
    return vae


def calibrate(vae, seed):
    """Scales conv_out so the decoded values mostly stay inside [−1, 1]: random weights
    saturate otherwise, and clamped values test little."""
    gen = torch.Generator().manual_seed(seed + 2)
    z = torch.randn(1, LATENT_CHANNELS, 2, 2, 2, generator=gen)
    temb = torch.tensor([TIMESTEP])
    y = vae.decoder(z, temb)
    conv = vae.decoder.conv_out.conv
    conv.weight.mul_(0.6 / y.std().item())
    conv.bias.mul_(0.6 / y.std().item())


# ---------------------------------------------------------------------------------------------
# Names: diffusers → official, by parsing the module path.

def official_indices(vae):
    """Official `up_blocks` index of each diffusers part: ("mid",), ("conv_in", i),
    ("upsampler", i), ("resnets", i)."""
    index = {("mid",): 0}
    n = 1
    for i, block in enumerate(vae.decoder.up_blocks):
        if block.conv_in is not None:
            index[("conv_in", i)] = n
            n += 1
        if block.upsamplers is not None:
            index[("upsampler", i)] = n
            n += 1
        if len(block.resnets) > 0:
            index[("resnets", i)] = n
            n += 1
    return index


def resnet_leaf(rest):
    rest = rest.replace("norm3.weight", "norm3.norm.weight").replace("norm3.bias", "norm3.norm.bias")
    return re.sub(r"^conv_shortcut\.conv\.", "conv_shortcut.", rest)


def official_name(name, index):
    if name == "latents_mean":
        return "per_channel_statistics.mean-of-means"
    if name == "latents_std":
        return "per_channel_statistics.std-of-means"
    if not name.startswith("decoder."):
        return None
    rest = name[len("decoder."):]
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"decoder.up_blocks.0.res_blocks.{m[1]}.{resnet_leaf(m[2])}"
    m = re.match(r"mid_block\.time_embedder\.(.*)", rest)
    if m:
        return f"decoder.up_blocks.0.time_embedder.{m[1]}"
    m = re.match(r"up_blocks\.(\d+)\.conv_in\.(.*)", rest)
    if m:
        return f"decoder.up_blocks.{index[('conv_in', int(m[1]))]}.{resnet_leaf(m[2])}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest)
    if m:
        return f"decoder.up_blocks.{index[('upsampler', int(m[1]))]}.{m[2]}"
    m = re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:
        return f"decoder.up_blocks.{index[('resnets', int(m[1]))]}.res_blocks.{m[2]}.{resnet_leaf(m[3])}"
    m = re.match(r"up_blocks\.(\d+)\.time_embedder\.(.*)", rest)
    if m:
        return f"decoder.up_blocks.{index[('resnets', int(m[1]))]}.time_embedder.{m[2]}"
    if rest.startswith("time_embedder."):
        return "decoder.last_" + rest
    if rest == "scale_shift_table":
        return "decoder.last_scale_shift_table"
    return name


def official_state(vae, dtype):
    index = official_indices(vae)
    out = {}
    for name, t in vae.state_dict().items():
        o = official_name(name, index)
        if o is not None:
            out[o] = t.to(dtype).contiguous()
    # The statistics the decoder does not use, as the releases carry them.
    for extra in ["mean-of-stds", "mean-of-stds_over_std-of-means", "channel"]:
        out[f"per_channel_statistics.{extra}"] = torch.zeros(LATENT_CHANNELS, dtype=dtype)
    return out


# ---------------------------------------------------------------------------------------------
# The reference decode.

@contextmanager
def injected_planes(planes):
    """Makes the decoder's `torch.randn(spatial_shape)` calls return `planes` in order."""
    real = torch.randn
    queue = list(planes)

    def fake(*args, **kwargs):
        shape = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
        plane = queue.pop(0)
        assert tuple(plane.shape) == tuple(shape), (plane.shape, shape)
        return torch.from_numpy(plane).to(kwargs.get("dtype") or torch.float64)

    torch.randn = fake
    try:
        yield
    finally:
        torch.randn = real
    assert not queue, f"{len(queue)} noise planes unused"


def plane_list(vae, seed, h, w):
    """The planes the decoder draws, in call order, at each block's resolution."""
    index = official_indices(vae)
    out = []
    size = (h, w)

    def resnets(block, module_list):
        for j, r in enumerate(module_list):
            if r.per_channel_scale1 is not None:
                out.append(noise_plane(seed, block, j, 0, *size))
                out.append(noise_plane(seed, block, j, 1, *size))

    resnets(0, vae.decoder.mid_block.resnets)
    for i, block in enumerate(vae.decoder.up_blocks):
        if block.conv_in is not None:
            resnets(index[("conv_in", i)], [block.conv_in])
        if block.upsamplers is not None:
            size = (size[0] * 2, size[1] * 2)
        if len(block.resnets) > 0:
            resnets(index[("resnets", i)], block.resnets)
    return out


def set_padding(vae, mode):
    for m in vae.decoder.modules():
        if isinstance(m, torch.nn.Conv3d) and m.kernel_size[1] == 3:
            m.padding_mode = mode


def decode(vae, latent, seed=0, noise_scale=0.0, padding="zeros"):
    vae = vae.double()
    set_padding(vae, padding)
    _, c, t, h, w = latent.shape
    z = latent.double()
    if vae.config.timestep_conditioning and noise_scale > 0:
        eps = torch.from_numpy(latent_noise(seed, c, t, h, w))[None]
        z = (1.0 - noise_scale) * z + noise_scale * eps
    z = z * vae.latents_std.view(1, -1, 1, 1, 1) + vae.latents_mean.view(1, -1, 1, 1, 1)
    temb = torch.tensor([TIMESTEP], dtype=torch.float64)
    with torch.no_grad(), injected_planes(plane_list(vae, seed, h, w)):
        y = vae.decoder(z, temb)
    vae.float()
    set_padding(vae, "zeros")
    frames = ((y[0] + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 3, 0)
    clamped = ((y < -1) | (y > 1)).double().mean().item()
    assert clamped < 0.15, f"{clamped:.0%} of the values clamp"
    return frames.float().contiguous()


def cross_check(path, expected, key, prefix="", seed=0, noise_scale=0.0):
    """Decodes an official file with the LTX-Video reference code, from its metadata config."""
    try:
        from ltx_video.models.autoencoders.causal_video_autoencoder import CausalVideoAutoencoder
    except ImportError:
        return
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["config"])["vae"]
    cfg.setdefault("spatial_padding_mode", "reflect")
    cfg["encoder_blocks"] = [["res_x", 1]]
    state = {k[len(prefix):]: v.double() for k, v in load_file(path).items() if k.startswith(prefix)}
    vae = CausalVideoAutoencoder.from_config(cfg).double().eval()
    decoder_state = {k: v for k, v in state.items() if k.startswith("decoder.")}
    missing, unexpected = torch.nn.Module.load_state_dict(vae, decoder_state, strict=False)
    assert not unexpected and not [m for m in missing if m.startswith("decoder.")], (missing, unexpected)
    z = expected["latent"].double()
    _, c, t, h, w = z.shape
    if cfg.get("timestep_conditioning") and noise_scale > 0:
        z = (1.0 - noise_scale) * z + noise_scale * torch.from_numpy(latent_noise(seed, c, t, h, w))[None]
    std = state["per_channel_statistics.std-of-means"].view(1, -1, 1, 1, 1)
    mean = state["per_channel_statistics.mean-of-means"].view(1, -1, 1, 1, 1)
    z = z * std + mean
    planes, size = [], (h, w)
    for b, block in enumerate(vae.decoder.up_blocks):
        if type(block).__name__ == "DepthToSpaceUpsample":
            size = (size[0] * 2, size[1] * 2)
        for j, r in enumerate(getattr(block, "res_blocks", [])):
            if r.inject_noise:
                planes += [noise_plane(seed, b, j, slot, *size) for slot in (0, 1)]
    target = (1, 3, 8 * (t - 1) + 1, 32 * h, 32 * w)
    with torch.no_grad(), injected_planes(planes):
        y = vae.decode(z, target_shape=target, timestep=torch.tensor([TIMESTEP], dtype=torch.float64)).sample
    frames = ((y[0] + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 3, 0).float()
    err = (frames - expected[key]).abs().max().item()
    assert err < 1e-5, f"{os.path.basename(path)} {key}: the reference code differs by {err}"
    print(f"{os.path.basename(path)} {key}: LTX-Video reference agrees ({err:.1e})")


# ---------------------------------------------------------------------------------------------

def save_official(vae, version, path, padding, dtype, prefix=""):
    state = {prefix + k: v for k, v in official_state(vae, dtype).items()}
    if prefix:
        # A combined checkpoint also holds the transformer.
        state["model.diffusion_model.patchify_proj.weight"] = torch.zeros(4, LATENT_CHANNELS, dtype=dtype)
    meta = {"config": json.dumps({"vae": official_config(version, padding)})}
    save_file(state, path, metadata=meta)


def save_diffusers(vae, folder):
    os.makedirs(folder, exist_ok=True)
    vae.save_config(folder)
    state = {k: v.contiguous() for k, v in vae.state_dict().items()}
    save_file(state, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(99)

    def latent(t, h, w):
        return torch.randn(1, LATENT_CHANNELS, t, h, w, generator=gen)

    # v0: no timestep conditioning, LayerNorm + 1×1×1 shortcuts. The official file has no
    # padding mode in its config (framestream then pads by reflection, as ComfyUI does); the
    # diffusers folder pads with zeros.
    vae = build("v0", 10)
    save_official(vae, "v0", os.path.join(OUT, "v0.safetensors"), None, torch.float32)
    save_diffusers(vae, os.path.join(OUT, "v0-diffusers"))
    z = latent(2, 2, 2)
    expected = {
        "latent": z,
        "frames_reflect": decode(vae, z, padding="reflect"),
        "frames_zeros": decode(vae, z, padding="zeros"),
    }
    save_file(expected, os.path.join(OUT, "v0-expected.safetensors"))
    cross_check(os.path.join(OUT, "v0.safetensors"), expected, "frames_reflect")

    # v1: noise injection, timestep conditioning; a combined checkpoint (`vae.` prefix), f16,
    # replicate padding from its config.
    vae = build("v1", 20)
    save_official(vae, "v1", os.path.join(OUT, "v1-combined.safetensors"), "replicate", torch.float16, "vae.")
    z = latent(2, 2, 2)
    expected = {
        "latent": z,
        "frames_seed0": decode(vae, z, seed=0, padding="replicate"),
        "frames_seed5_noise": decode(vae, z, seed=5, noise_scale=NOISE_SCALE, padding="replicate"),
    }
    save_file(expected, os.path.join(OUT, "v1-expected.safetensors"))
    combined = os.path.join(OUT, "v1-combined.safetensors")
    cross_check(combined, expected, "frames_seed0", "vae.")
    cross_check(combined, expected, "frames_seed5_noise", "vae.", seed=5, noise_scale=NOISE_SCALE)

    # v2: bf16 official file with zeros padding, and the same weights as a diffusers folder.
    vae = build("v2", 30)
    save_official(vae, "v2", os.path.join(OUT, "v2.safetensors"), "zeros", torch.bfloat16)
    save_diffusers(vae, os.path.join(OUT, "v2-diffusers"))
    z = latent(2, 2, 3)
    z1 = latent(1, 2, 2)
    expected = {
        "latent": z,
        "frames": decode(vae, z),
        "frames_seed5_noise": decode(vae, z, seed=5, noise_scale=NOISE_SCALE),
        "latent_t1": z1,
        "frames_t1": decode(vae, z1),
    }
    save_file(expected, os.path.join(OUT, "v2-expected.safetensors"))
    cross_check(os.path.join(OUT, "v2.safetensors"), expected, "frames")
    cross_check(os.path.join(OUT, "v2.safetensors"), expected, "frames_seed5_noise", seed=5, noise_scale=NOISE_SCALE)
    # A ComfyUI `.latent` file of the v2 latent.
    save_file(
        {"latent_tensor": z, "latent_format_version_0": torch.zeros(0)},
        os.path.join(OUT, "v2.latent"),
        metadata={"prompt": "{}"},
    )


if __name__ == "__main__":
    main()
