#!/usr/bin/env python3
"""Builds the LTX-Video VAE decoder fixtures under tests/fixtures/ltx/.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch diffusers safetensors numpy
    /tmp/venv/bin/python tools/make_ltx_fixtures.py            # everything
    /tmp/venv/bin/python tools/make_ltx_fixtures.py ltx09      # v0, v1, v2 only
    /tmp/venv/bin/python tools/make_ltx_fixtures.py ltx2       # v20, v23 only (diffusers >= 0.38)

Each part rewrites only its own files; both are deterministic (checked with
diffusers 0.42.1 and torch 2.15.0 on CPU). Frames are channel-last f32 `[frames, height, width, 3]`;
latents are normalised, `[1, C, T, h, w]`, with C = 16 and patch 4, so T latent frames of h×w
decode to 8(T−1)+1 frames of 32h×32w.

0.9.x (`ltx09`). For each decoder layout (v0 = 0.9.0, v1 = 0.9.1, v2 = 0.9.5+), a tiny
random-weight model is built with diffusers' `AutoencoderKLLTXVideo` (same block graph as the
releases, narrow channels), its weights rounded to the dtype they are stored in, and saved

  * in the official single-file naming, with the config in the safetensors metadata
    (`__metadata__["config"] = {"vae": {...}}`), as the releases and ComfyUI write it;
  * for v0 and v2 also as a diffusers folder (`config.json` + `diffusion_pytorch_model.safetensors`).

The reference frames are the diffusers decoder's output in float64, mapped to [0, 1]:
`clamp((decoder(un_normalize(mix(latent)), timestep) + 1) / 2, 0, 1)`. The decode noise ε of
`mix` and v1's injected noise planes are drawn from the same counter-based generator
framestream uses (Philox-4x32-10, re-implemented below), so parity holds with noise on.
When the LTX-Video reference package (`ltx_video`) is importable (e.g. PYTHONPATH pointing at a
checkout of Lightricks/LTX-Video), each official file is also decoded by its `Decoder`, built
from the metadata config alone, and must match the diffusers frames (< 1e-5).

LTX-2 (`ltx2`). Tiny random-weight LTX-2.0 (v20) and LTX-2.3 (v23) decoders built with diffusers'
`AutoencoderKLLTX2Video`: no timestep conditioning, no decode noise, generalised depth-to-space
upsamplers (`compress_all` / `compress_time` / `compress_space`, multiplier = channel reduction).

  * v20: the v2 graph without timestep conditioning, residual `compress_all` ×3, reflect padding.
    `v20-combined.safetensors`: f32, official names under `vae.`, only the two statistics
    buffers, beside small stand-ins for the other parts of a combined LTX-2 checkpoint
    (`model.diffusion_model.`, `audio_vae.` with its own statistics, `vocoder.`,
    `text_embedding_projection.`); `v20-diffusers/` (f32).
    `v20-expected.safetensors`: `latent` [1,16,3,2,2] → `frames` [17,64,64,3],
    `latent_t1` [1,16,1,2,2] → `frames_t1` [1,64,64,3].
  * v23: the 2.3 block list (plain upsamplers: spatial, temporal, spatiotemporal without
    reduction, spatiotemporal), zeros padding. `v23.safetensors`: VAE only, bf16, no prefix;
    `v23-diffusers/` (bf16). `v23-expected.safetensors`: as v20's plus `latent_long`
    [1,16,17,1,1] → `frames_long` [129,32,32,3], past the graph's streaming lag (the first
    frame before the end comes at 9 latent frames here, at 15 in the release).

The reference frames are `clamp((vae.decode(latent·latents_std + latents_mean) + 1) / 2, 0, 1)`
in float64 (the diffusers VAE takes the denormalised latent). The script checks that the
diffusers modules, the official `decoder_blocks` (derived from the diffusers arguments) and the
official tensor shapes describe the same graph; decodes each official file again from its
tensors and metadata alone (an independent re-implementation below) and each diffusers folder
after loading it back, both of which must give the reference; and, when Lightricks' LTX-2
package is importable (`pip install --no-deps ltx-core einops`: it pins an older torch), decodes
each official file with its `VideoDecoder` built from the metadata config (< 1e-5).
"""
import json
import os
import re
import sys
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


def official_common():
    """The metadata config fields every fixture shares, in the releases' order."""
    return {
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
    }


def official_config(version, padding):
    cfg = official_common()
    cfg["causal_decoder"] = False
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


def official_state(vae, dtype, unused_statistics=True):
    index = official_indices(vae)
    out = {}
    for name, t in vae.state_dict().items():
        o = official_name(name, index)
        if o is not None:
            out[o] = t.to(dtype).contiguous()
    if unused_statistics:
        # The statistics the decoder does not use, as the 0.9.x releases carry them.
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


def save_diffusers(vae, folder, dtype=None):
    os.makedirs(folder, exist_ok=True)
    vae.save_config(folder)
    state = {k: (v if dtype is None else v.to(dtype)).contiguous() for k, v in vae.state_dict().items()}
    save_file(state, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


def make_ltx09():
    """The 0.9.x fixtures: v0, v1, v2."""
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



# ---------------------------------------------------------------------------------------------
# LTX-2.0 and LTX-2.3 (`AutoencoderKLLTX2Video`, diffusers ≥ 0.38): no timestep conditioning,
# no noise, generalised depth-to-space upsamplers. `decoder_blocks` (pixel side first) is what
# `official_decoder` derives from the diffusers arguments; `graph` (latent side first) is the
# decoder both must describe: ("conv_in", C_in, C_out), ("res", C, layers),
# ("d2s", stride, reduction, residual, C_in, conv C_out), ("conv_out", C_in, C_out).

LTX2_STRIDES = {"compress_all": (2, 2, 2), "compress_time": (2, 1, 1), "compress_space": (1, 2, 2)}
LTX2_KINDS = {"spatiotemporal": "compress_all", "temporal": "compress_time", "spatial": "compress_space"}

LTX2_VERSIONS = {
    # LTX-2.0: the v2 graph without timestep conditioning, residual upsamplers, reflect padding.
    "v20": dict(
        diffusers=dict(
            decoder_block_out_channels=(8, 16, 32),
            decoder_layers_per_block=(1, 1, 1, 2),
            decoder_spatio_temporal_scaling=(True, True, True),
            decoder_inject_noise=(False, False, False, False),
            upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
            upsample_residual=(True, True, True),
            upsample_factor=(2, 2, 2),
            decoder_causal=False,
            decoder_spatial_padding_mode="reflect",
            timestep_conditioning=False,
        ),
        decoder_base_channels=4,
        decoder_blocks=[
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"residual": True, "multiplier": 2}],
            ["res_x", {"num_layers": 2}],
        ],
        official_extra={},
        graph=[
            ("conv_in", 16, 32), ("res", 32, 2),
            ("d2s", (2, 2, 2), 2, True, 32, 128), ("res", 16, 1),
            ("d2s", (2, 2, 2), 2, True, 16, 64), ("res", 8, 1),
            ("d2s", (2, 2, 2), 2, True, 8, 32), ("res", 4, 1),
            ("conv_out", 4, 48),
        ],
        dtype=torch.float32,
    ),
    # LTX-2.3: plain upsamplers of three kinds (`upsample_type` is read latent side first), one
    # without channel reduction, zeros padding.
    "v23": dict(
        diffusers=dict(
            decoder_block_out_channels=(8, 16, 16, 32),
            decoder_layers_per_block=(2, 1, 2, 1, 1),
            decoder_spatio_temporal_scaling=(True, True, True, True),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
            upsample_residual=(False, False, False, False),
            upsample_factor=(2, 2, 1, 2),
            decoder_causal=False,
            decoder_spatial_padding_mode="zeros",
            timestep_conditioning=False,
        ),
        decoder_base_channels=4,
        decoder_blocks=[
            ["res_x", {"num_layers": 2}],
            ["compress_space", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
            ["compress_time", {"multiplier": 2}],
            ["res_x", {"num_layers": 2}],
            ["compress_all", {"multiplier": 1}],
            ["res_x", {"num_layers": 1}],
            ["compress_all", {"multiplier": 2}],
            ["res_x", {"num_layers": 1}],
        ],
        official_extra={"normalize_latent_channels": False},
        graph=[
            ("conv_in", 16, 32), ("res", 32, 1),
            ("d2s", (2, 2, 2), 2, False, 32, 128), ("res", 16, 1),
            ("d2s", (2, 2, 2), 1, False, 16, 128), ("res", 16, 2),
            ("d2s", (2, 1, 1), 2, False, 16, 16), ("res", 8, 1),
            ("d2s", (1, 2, 2), 2, False, 8, 16), ("res", 4, 2),
            ("conv_out", 4, 48),
        ],
        dtype=torch.bfloat16,
    ),
}


def official_decoder(kw):
    """`decoder_base_channels` and `decoder_blocks` (pixel side first) for diffusers decoder
    arguments: res_x `layers[i]`, then upsampler i (its kind from `upsample_type` read backwards,
    multiplier `upsample_factor[i]`, residual `upsample_residual[i]`), finally res_x `layers[n]`."""
    layers, factor = kw["decoder_layers_per_block"], kw["upsample_factor"]
    residual, kinds = kw["upsample_residual"], list(reversed(kw["upsample_type"]))
    n = len(kw["decoder_block_out_channels"])
    assert len(layers) == n + 1 and len(factor) == len(residual) == len(kinds) == n
    assert all(kw["decoder_spatio_temporal_scaling"]) and not any(kw["decoder_inject_noise"])
    blocks = []
    for i in range(n):
        blocks.append(["res_x", {"num_layers": layers[i]}])
        kind = LTX2_KINDS[kinds[i]]
        assert kind == "compress_all" or not residual[i], "only compress_all upsamplers can be residual"
        args = {"residual": True} if residual[i] else {}
        args["multiplier"] = factor[i]
        blocks.append([kind, args])
    blocks.append(["res_x", {"num_layers": layers[n]}])
    return kw["decoder_block_out_channels"][0] // factor[0], blocks


def ltx2_official_config(version):
    spec = LTX2_VERSIONS[version]
    kw = spec["diffusers"]
    base, blocks = official_decoder(kw)
    assert (base, blocks) == (spec["decoder_base_channels"], spec["decoder_blocks"]), (base, blocks)
    cfg = official_common()
    cfg.update({
        "causal_decoder": kw["decoder_causal"],
        "timestep_conditioning": kw["timestep_conditioning"],
        "spatial_padding_mode": kw["decoder_spatial_padding_mode"],
        "decoder_base_channels": base,
        "decoder_blocks": blocks,
    })
    cfg.update(spec["official_extra"])
    return cfg


def official_graph(cfg):
    """The decoder graph an official config describes, latent side first. The conv_in width is
    `decoder_base_channels` times every upsampler's multiplier."""
    width = cfg["decoder_base_channels"]
    for kind, args in cfg["decoder_blocks"]:
        if kind in LTX2_STRIDES:
            width *= args.get("multiplier", 1)
    graph = [("conv_in", cfg["latent_channels"], width)]
    for kind, args in reversed(cfg["decoder_blocks"]):
        if kind == "res_x":
            graph.append(("res", width, args["num_layers"] if isinstance(args, dict) else args))
        else:
            stride, r = LTX2_STRIDES[kind], args.get("multiplier", 1)
            residual = kind == "compress_all" and args.get("residual", False)
            graph.append(("d2s", stride, r, residual, width, width * int(np.prod(stride)) // r))
            width //= r
    graph.append(("conv_out", width, cfg["out_channels"] * cfg["patch_size"] ** 2))
    return graph


def diffusers_graph(vae):
    """The graph of a built `AutoencoderKLLTX2Video` decoder, read off its modules."""
    d = vae.decoder

    def res(resnets):
        widths = {(r.conv1.in_channels, r.conv1.out_channels, r.conv2.out_channels) for r in resnets}
        assert len(widths) == 1 and len(set(*widths)) == 1, widths
        assert all(r.conv_shortcut is None and r.per_channel_scale1 is None for r in resnets)
        return ("res", widths.pop()[0], len(resnets))

    graph = [("conv_in", d.conv_in.in_channels, d.conv_in.out_channels), res(d.mid_block.resnets)]
    for block in d.up_blocks:
        assert block.conv_in is None and len(block.upsamplers) == 1
        up = block.upsamplers[0]
        graph.append(("d2s", tuple(up.stride), up.upscale_factor, up.residual, up.conv.in_channels, up.conv.out_channels))
        graph.append(res(block.resnets))
    graph.append(("conv_out", d.conv_out.in_channels, d.conv_out.out_channels))
    return graph


def official_shapes(cfg):
    """Official tensor names and shapes for a graph, decoder blocks numbered latent side first."""
    shapes, n = {}, 0

    def conv(name, cin, cout):
        shapes[f"decoder.{name}.conv.weight"] = (cout, cin, 3, 3, 3)
        shapes[f"decoder.{name}.conv.bias"] = (cout,)

    for node in official_graph(cfg):
        if node[0] in ("conv_in", "conv_out"):
            conv(node[0], node[1], node[2])
        elif node[0] == "res":
            for j in range(node[2]):
                conv(f"up_blocks.{n}.res_blocks.{j}.conv1", node[1], node[1])
                conv(f"up_blocks.{n}.res_blocks.{j}.conv2", node[1], node[1])
            n += 1
        else:
            conv(f"up_blocks.{n}.conv", node[4], node[5])
            n += 1
    for stat in ("mean-of-means", "std-of-means"):
        shapes[f"per_channel_statistics.{stat}"] = (cfg["latent_channels"],)
    return shapes


def check_ltx2_layout(vae, version):
    """The diffusers modules, the intended graph, the official config and the official tensors
    all describe the same decoder."""
    spec = LTX2_VERSIONS[version]
    cfg = ltx2_official_config(version)
    assert diffusers_graph(vae) == spec["graph"], diffusers_graph(vae)
    assert official_graph(cfg) == spec["graph"], official_graph(cfg)
    state = official_state(vae, torch.float32, unused_statistics=False)
    got = {k: tuple(v.shape) for k, v in state.items()}
    assert got == official_shapes(cfg), set(got.items()) ^ set(official_shapes(cfg).items())
    d = vae.decoder
    assert d.is_causal is False and d.time_embedder is None and d.timestep_scale_multiplier is None
    for m in d.modules():
        if isinstance(m, torch.nn.Conv3d) and m.kernel_size[1] == 3:
            assert m.padding_mode == spec["diffusers"]["decoder_spatial_padding_mode"], m.padding_mode
            assert m.padding == (0, 1, 1), m.padding


def build_ltx2(version, seed):
    from diffusers import AutoencoderKLLTX2Video

    spec = LTX2_VERSIONS[version]
    torch.manual_seed(seed)
    vae = AutoencoderKLLTX2Video(
        latent_channels=LATENT_CHANNELS,
        patch_size=4,
        # The encoder is only there to make a loadable folder: narrow, one layer per block.
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=(1, 1, 1, 1, 1),
        # As the released configs state them (left out, they would be derived from the encoder
        # as 64 and 16).
        spatial_compression_ratio=32,
        temporal_compression_ratio=8,
        **spec["diffusers"],
    ).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        vae.latents_mean.copy_(torch.randn(LATENT_CHANNELS, generator=gen) * 0.3)
        vae.latents_std.copy_(torch.rand(LATENT_CHANNELS, generator=gen) + 0.5)
        calibrate_ltx2(vae, seed)
        for t in list(vae.parameters()) + list(vae.buffers()):
            t.copy_(t.to(spec["dtype"]).to(torch.float32))
    check_ltx2_layout(vae, version)
    return vae


def calibrate_ltx2(vae, seed):
    """As `calibrate`; the LTX-2 decoder takes no timestep."""
    gen = torch.Generator().manual_seed(seed + 2)
    z = torch.randn(1, LATENT_CHANNELS, 2, 2, 2, generator=gen)
    z = z * vae.latents_std.view(1, -1, 1, 1, 1) + vae.latents_mean.view(1, -1, 1, 1, 1)
    y = vae.decoder(z)
    conv = vae.decoder.conv_out.conv
    conv.weight.mul_(0.6 / y.std().item())
    conv.bias.mul_(0.6 / y.std().item())


def frames_of(y):
    return ((y[0] + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 3, 0).float().contiguous()


def decode_ltx2(vae, latent, stats=None):
    """The diffusers decode of a normalised latent, in float64: the VAE takes the denormalised one."""
    assert not (vae.use_tiling or vae.use_slicing or vae.use_framewise_decoding)
    vae = vae.double()
    _, _, t, h, w = latent.shape
    z = latent.double() * vae.latents_std.view(1, -1, 1, 1, 1) + vae.latents_mean.view(1, -1, 1, 1, 1)
    with torch.no_grad():
        y = vae.decode(z).sample
    vae.float()
    assert tuple(y.shape) == (1, 3, 8 * (t - 1) + 1, 32 * h, 32 * w), tuple(y.shape)
    clamped = ((y < -1) | (y > 1)).double().mean().item()
    assert clamped < 0.15, f"{clamped:.0%} of the values clamp"
    if stats is not None:
        stats.append((tuple(latent.shape), y.abs().max().item(), clamped))
    return y


def official_decode(path, latent, prefix=""):
    """Decodes a normalised latent from an official file's tensors and metadata config alone,
    written from the layer math (PixelNorm, k=3 conv with first/last-frame temporal padding,
    generalised depth-to-space, unpatchify), in float64. Returns the raw output [1, 3, F, H, W]."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["config"])["vae"]
    assert not cfg["causal_decoder"] and not cfg["timestep_conditioning"]
    w = {k[len(prefix):]: v.double() for k, v in load_file(path).items() if k.startswith(prefix)}
    mode = {"zeros": "constant"}.get(cfg["spatial_padding_mode"], cfg["spatial_padding_mode"])

    def conv(x, name):
        x = torch.cat([x[:, :, :1], x, x[:, :, -1:]], dim=2)
        x = torch.nn.functional.pad(x, (1, 1, 1, 1, 0, 0), mode=mode)
        return torch.nn.functional.conv3d(x, w[f"decoder.{name}.conv.weight"], w[f"decoder.{name}.conv.bias"])

    def norm_act(x):
        x = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)
        return x * torch.sigmoid(x)

    def shuffle(x, stride):
        # U[c, st·t+a, sh·y+b, sw·x+d] = X[c·S + a·sh·sw + b·sw + d, t, y, x]
        b, c, t, h, wd = x.shape
        st, sh, sw = stride
        x = x.reshape(b, c // (st * sh * sw), st, sh, sw, t, h, wd)
        return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, -1, t * st, h * sh, wd * sw)

    x = latent.double() * w["per_channel_statistics.std-of-means"].view(1, -1, 1, 1, 1)
    x = x + w["per_channel_statistics.mean-of-means"].view(1, -1, 1, 1, 1)
    x = conv(x, "conv_in")
    for n, (kind, args) in enumerate(reversed(cfg["decoder_blocks"])):
        if kind == "res_x":
            for j in range(args["num_layers"]):
                h = conv(norm_act(x), f"up_blocks.{n}.res_blocks.{j}.conv1")
                x = x + conv(norm_act(h), f"up_blocks.{n}.res_blocks.{j}.conv2")
            continue
        stride, r = LTX2_STRIDES[kind], args.get("multiplier", 1)
        s = int(np.prod(stride))
        u = shuffle(conv(x, f"up_blocks.{n}.conv"), stride)
        if kind == "compress_all" and args.get("residual", False):
            u = u + shuffle(x, stride).repeat(1, s // r, 1, 1, 1)
        x = u[:, :, 1:] if stride[0] == 2 else u
    y = conv(norm_act(x), "conv_out")
    # out[c, t, 4i+q, 4j+r] = y[16c + 4r + q, t, i, j]
    b, _, t, h, wd = y.shape
    p = cfg["patch_size"]
    return y.reshape(b, 3, p, p, t, h, wd).permute(0, 1, 4, 5, 3, 6, 2).reshape(b, 3, t, h * p, wd * p)


def neighbours():
    """Small stand-ins for what sits beside `vae.` in a combined LTX-2 checkpoint. The audio
    statistics have the video statistics' shape, so only the prefix tells them apart."""
    gen = torch.Generator().manual_seed(7)
    return {
        "model.diffusion_model.patchify_proj.weight": torch.randn(8, LATENT_CHANNELS, generator=gen),
        "audio_vae.per_channel_statistics.mean-of-means": torch.randn(LATENT_CHANNELS, generator=gen) + 3.0,
        "audio_vae.decoder.conv_in.conv.weight": torch.randn(8, 8, 3, 3, generator=gen),
        "vocoder.conv_pre.weight": torch.randn(8, 16, 7, generator=gen),
        "text_embedding_projection.weight": torch.randn(8, 12, generator=gen),
    }


def save_official_ltx2(vae, version, path, prefix=""):
    dtype = LTX2_VERSIONS[version]["dtype"]
    state = {prefix + k: v for k, v in official_state(vae, dtype, unused_statistics=False).items()}
    if prefix:
        state.update(neighbours())
    meta = {"config": json.dumps({"vae": ltx2_official_config(version)})}
    save_file(state, path, metadata=meta)


def check_ltx2_files(version, official, prefix, folder, expected, raw):
    """The official file (decoded from its tensors and config alone) and the diffusers folder
    (loaded back) give the reference frames."""
    from diffusers import AutoencoderKLLTX2Video

    loaded = AutoencoderKLLTX2Video.from_pretrained(folder, low_cpu_mem_usage=False).float().eval()
    for key in expected:
        if not key.startswith("latent"):
            continue
        frames_key = "frames" + key[len("latent"):]
        y_official = official_decode(official, expected[key], prefix)
        y_folder = decode_ltx2(loaded, expected[key])
        for what, y in (("official", y_official), ("diffusers folder", y_folder)):
            err = (y - raw[frames_key]).abs().max().item()
            assert err < 1e-9, f"{version} {frames_key}: the {what} decode differs by {err}"
        print(f"{version} {frames_key} {tuple(expected[frames_key].shape)}: official file and diffusers folder agree")
    ltx_core_check(official, expected, prefix)


def ltx_core_check(path, expected, prefix=""):
    """When the LTX-2 reference package (`ltx_core`) is importable, decodes an official file with
    its `VideoDecoder`, built from the metadata config alone (it takes the normalised latent)."""
    try:
        from ltx_core.model.video_vae import VideoDecoderConfigurator
    except ImportError:
        return
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["config"])
    decoder = VideoDecoderConfigurator.from_config(meta).double().eval()
    state = {}
    for k, v in load_file(path).items():
        if k.startswith(prefix + "decoder."):
            state[k[len(prefix + "decoder."):]] = v.double()
        elif k.startswith(prefix + "per_channel_statistics."):
            state[k[len(prefix):]] = v.double()
    decoder.load_state_dict(state, strict=True)
    for key in expected:
        if key.startswith("latent"):
            frames_key = "frames" + key[len("latent"):]
            with torch.no_grad():
                frames = frames_of(decoder(expected[key].double()))
            err = (frames - expected[frames_key]).abs().max().item()
            assert err < 1e-5, f"{os.path.basename(path)} {frames_key}: the LTX-2 reference code differs by {err}"
            print(f"{os.path.basename(path)} {frames_key}: LTX-2 reference agrees ({err:.1e})")


def make_ltx2():
    """The LTX-2.0 (v20) and LTX-2.3 (v23) fixtures."""
    os.makedirs(OUT, exist_ok=True)
    for version, seed, inputs, official, prefix in [
        ("v20", 40, {"": (3, 2, 2), "_t1": (1, 2, 2)}, "v20-combined.safetensors", "vae."),
        ("v23", 50, {"": (3, 2, 2), "_t1": (1, 2, 2), "_long": (17, 1, 1)}, "v23.safetensors", ""),
    ]:
        vae = build_ltx2(version, seed)
        official = os.path.join(OUT, official)
        folder = os.path.join(OUT, f"{version}-diffusers")
        save_official_ltx2(vae, version, official, prefix)
        save_diffusers(vae, folder, LTX2_VERSIONS[version]["dtype"])
        gen = torch.Generator().manual_seed(seed + 200)
        expected, raw, stats = {}, {}, []
        for suffix, (t, h, w) in inputs.items():
            z = torch.randn(1, LATENT_CHANNELS, t, h, w, generator=gen)
            raw["frames" + suffix] = decode_ltx2(vae, z, stats)
            expected["latent" + suffix] = z
            expected["frames" + suffix] = frames_of(raw["frames" + suffix])
        save_file(expected, os.path.join(OUT, f"{version}-expected.safetensors"))
        for shape, peak, clamped in stats:
            print(f"{version} latent {shape}: max |x| {peak:.3f}, {clamped:.2%} clamped")
        check_ltx2_files(version, official, prefix, folder, expected, raw)


PARTS = {"ltx09": make_ltx09, "ltx2": make_ltx2}


def main():
    parts = sys.argv[1:] or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        sys.exit(f"usage: make_ltx_fixtures.py [{' | '.join(PARTS)}]...  (unknown: {' '.join(unknown)})")
    for part in parts:
        PARTS[part]()


if __name__ == "__main__":
    main()
