#!/usr/bin/env python3
"""Builds the Wan 2.1 / Wan 2.2 VAE decoder fixtures under tests/fixtures/wan/.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch diffusers safetensors
    /tmp/venv/bin/python tools/make_wan_fixtures.py            # everything
    /tmp/venv/bin/python tools/make_wan_fixtures.py w21        # Wan 2.1 only
    /tmp/venv/bin/python tools/make_wan_fixtures.py w22        # Wan 2.2 only

Each part rewrites only its own files and is deterministic (checked with torch 2.15.0,
diffusers 0.42.1, safetensors 0.8.0 on CPU, one thread: two runs give byte-identical files).
The layer math, names and shapes are those of WAN_VAE.md (cited as §n).

Each part builds a tiny random-weight model with diffusers' `AutoencoderKLWan` (the release block
graph, narrow channels), draws its weights from a fixed seed (conv weights N(0, g²/fan_in) with
g = 1, 1.3 for the attention `to_qkv` so its softmax is far from uniform; biases N(0, 0.05²); RMS
gains γ uniform in [0.75, 1.25]), scales the head conv so the raw output has std 0.5 (random
weights saturate otherwise, and clamped values test little), then rounds every weight to the
dtype of its lowest-precision file. All files of a part hold exactly these rounded values, and
the reference is computed from them.

Reference frames: `vae.decode(latent)` in float64 — diffusers' frame-by-frame decode with the
per-layer feature cache (one decoder call per latent frame, the first flagged `first_chunk`; the
script checks this schedule and that every `time_conv` runs) — then `clamp((x + 1) / 2, 0, 1)`,
stored channel-last f32 `[frames, H, W, 3]`. Latents are VAE-space (§3.8: no statistics are
applied), `[1, z, T, 2, 3]` (non-square), standard normal; T latent frames decode to 4(T−1)+1
frames. One deviation from a plain `vae.decode`: diffusers' upsample rounds its input to f32
(`WanUpsample` calls `x.float()`); here it runs in float64 (nearest is exact, so only that
rounding goes; the script checks the plain decode differs by < 1e-6).

w21 — Wan 2.1 layout: `AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1,2,4,4],
num_res_blocks=1, temperal_downsample=[False,True,True])`. Decoder widths 32, 32, 32, 16, 8;
two resblocks per up block (the release has three), so the flat official indices are
`decoder.upsamples.{0,1}` resblocks, `.2` Resample upsample3d, `.{3,4}`, `.5` upsample3d,
`.{6,7}`, `.8` upsample2d, `.{9,10}` — not §5.3's 4i+j. Weights rounded to f16.

  * `w21.safetensors`: official / ComfyUI names (§5.2), f32 (of the f16-rounded values), no
    metadata: `conv2.*`, every `decoder.*` tensor, and a few encoder-side tensors a loader must
    ignore (not the whole encoder, to keep the fixtures small): `conv1.*`, `encoder.conv1.*`,
    `encoder.downsamples.0.residual.0.gamma`, `encoder.middle.0.residual.0.gamma`,
    `encoder.head.0.gamma`, `encoder.head.2.bias`.
  * `w21.pth`: the same tensors and names, f16, `torch.save` of a plain dict (no wrapper),
    loadable with `torch.load(weights_only=True)`.
  * `w21-diffusers/`: `config.json` (`_class_name: AutoencoderKLWan`, `decoder_base_dim: null`,
    `is_residual: false`, `patch_size: null`) + `diffusion_pytorch_model.safetensors`, diffusers
    names, f16 (the whole model, encoder included, so it loads with `from_pretrained`; f16 rather
    than f32 to keep the fixtures small — the values are the same).
  * `w21-expected.safetensors` (f32): see "Expected files" below; frames are 16×24 (×8).
  * `w21.latent`: a ComfyUI `.latent` file (`latent_tensor` = `latent` of the expected file,
    `latent_format_version_0` = empty tensor, metadata `prompt: "{}"`), VAE space as ComfyUI keeps it.

w22 — Wan 2.2 layout: as w21 plus `decoder_base_dim=8, is_residual=True, in_channels=12,
out_channels=12, patch_size=2, scale_factor_spatial=16`, with `z_dim=8` and an encoder narrower
than the decoder (`base_dim=4`, as the release has 160 against 256). Decoder widths 32, 32, 32,
16, 8; upsamplers keep their channels; `DupUp3D` shortcuts in up blocks 0–2 (R = 8, 8, 2);
`decoder.conv_out` has 12 output channels, unpatchified (p = 2) to 3. Nested official names
`decoder.upsamples.i.upsamples.j`, resblocks j = 0, 1 and the Resample at j = 2 (the release:
j < 3 and 3). Weights rounded to bf16.

  * `w22.safetensors`: official names, bf16, no metadata: `conv2.*`, every `decoder.*`
    tensor, and the encoder-side decoys `conv1.*`, `encoder.conv1.*`,
    `encoder.downsamples.0.downsamples.0.residual.0.gamma`, `encoder.middle.0.residual.0.gamma`,
    `encoder.head.0.gamma`, `encoder.head.2.bias`.
  * `w22-diffusers/`: `config.json` (`base_dim: 4`, `decoder_base_dim: 8`, `is_residual: true`,
    `in_channels`/`out_channels: 12`, `patch_size: 2`) + `diffusion_pytorch_model.safetensors`, bf16.
  * `w22-expected.safetensors` (f32): see below; frames are 32×48 (×16).

Both diffusers configs carry `latents_mean` / `latents_std` of length z (made-up values, not
identity): config only, never applied by `decode` nor by these references.

Expected files (`wNN-expected.safetensors`, all f32), z = 4 (w21) or 8 (w22), C = 32:

  * `latent` [1, z, 3, 2, 3] → `frames` [9, H, W, 3]
  * `latent_t1` [1, z, 1, 2, 3] → `frames_t1` [1, H, W, 3]
  * `latent_long` [1, z, 6, 2, 3] → `frames_long` [21, H, W, 3]
  * intermediates of the `latent` decode (same float64 frame-by-frame decode, per-call outputs
    concatenated over the frame loop), channel-last `[frames, h, w, c]`:
    `after_conv2` [3, 2, 3, z] (`conv2` / `post_quant_conv` output),
    `after_conv_in` [3, 2, 3, C] (`decoder.conv1` / `decoder.conv_in`),
    `after_mid` [3, 2, 3, C] (`decoder.middle` / `decoder.mid_block`),
    `after_up0` [5, 4, 6, c] (up block 0 with its Resample — and for w22 its DupUp3D shortcut —
    i.e. the input of `decoder.upsamples.3` (w21) / `decoder.upsamples.1` (w22));
    c = 16 (w21: the Resample halves) or 32 (w22).

Checks (assertions): the official renaming is a bijection onto the decoder tensors and its inverse,
written from the names alone as a loader would, gives them back; the official decoder shapes are
§5.2's at these widths; the official file (and, for w21, the `.pth`) loaded back through that
inverse, and the diffusers folder loaded with `from_pretrained`, decode to the reference
(< 1e-6); the `.pth` equals the safetensors; activations stay O(1) through the decoder; few
values clamp.
"""
import copy
import os
import re
import sys
from contextlib import contextmanager

import torch
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders import autoencoder_kl_wan
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "wan")

COMMON = dict(dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True])

VERSIONS = {
    "w21": dict(
        diffusers=dict(
            base_dim=8,
            z_dim=4,
            latents_mean=[0.25, -0.5, 0.125, 0.75],
            latents_std=[1.5, 0.5, 2.0, 0.75],
            **COMMON,
        ),
        layout="2.1",
        dtype=torch.float16,
        official_dtype=torch.float32,
        folder_dtype=torch.float16,
        scale=8,
        seed=100,
    ),
    "w22": dict(
        diffusers=dict(
            base_dim=4,
            decoder_base_dim=8,
            z_dim=8,
            is_residual=True,
            in_channels=12,
            out_channels=12,
            patch_size=2,
            scale_factor_spatial=16,
            latents_mean=[0.25, -0.5, 0.125, 0.75, -0.25, 0.5, -0.125, 0.0],
            latents_std=[1.5, 0.5, 2.0, 0.75, 1.25, 0.625, 1.0, 0.875],
            **COMMON,
        ),
        layout="2.2",
        dtype=torch.bfloat16,
        official_dtype=torch.bfloat16,
        folder_dtype=torch.bfloat16,
        scale=16,
        seed=200,
    ),
}

# Latent inputs of the expected files: suffix → (T, h, w).
INPUTS = {"": (3, 2, 3), "_t1": (1, 2, 3), "_long": (6, 2, 3)}

# ---------------------------------------------------------------------------------------------
# The tiny models.


def init_weights(vae, seed):
    """Deterministic random weights, in parameter order (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith(".gamma"):
                p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 0.5 + 0.75)
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.05)
            else:
                assert name.endswith(".weight") and p.dim() >= 4, name
                fan_in = p[0].numel()
                gain = 1.3 if ".to_qkv." in name else 1.0
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * gain / fan_in**0.5)


def build(version):
    spec = VERSIONS[version]
    vae = AutoencoderKLWan(**spec["diffusers"]).eval()
    assert not vae.use_tiling and not vae.use_slicing
    assert not list(vae.buffers()), "the Wan VAE holds no buffers"
    init_weights(vae, spec["seed"])
    calibrate(vae, spec["seed"] + 1)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(p.to(spec["dtype"]).to(torch.float32))
    check_graph(vae, version)
    return vae


def calibrate(vae, seed):
    """Scales the head conv (weight and bias) so the raw decoder output has std 0.5."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(1, vae.config.z_dim, 2, 2, 3, generator=gen)
    _, rec = reference_decode(vae, z)
    std = rec["raw"].std().item()
    conv = vae.decoder.conv_out
    with torch.no_grad():
        conv.weight.mul_(0.5 / std)
        conv.bias.mul_(0.5 / std)


def check_graph(vae, version):
    """Structural facts of the built model that the fixtures rely on (§2, §3.6, §7)."""
    d = vae.decoder
    z = vae.config.z_dim
    assert vae.post_quant_conv.weight.shape == (z, z, 1, 1, 1)
    assert d.conv_in.in_channels == z
    assert [type(m).__name__ for m in d.up_blocks[3].resnets] == ["WanResidualBlock"] * 2
    if version == "w22":
        # Channels are not multiplied by p² in this diffusers revision: conv_out gives 12 = 3·2².
        assert d.conv_out.weight.shape[0] == 12, d.conv_out.weight.shape
        assert vae.encoder.conv_in.weight.shape[1] == 12, vae.encoder.conv_in.weight.shape
        repeats = [b.avg_shortcut.repeats for b in d.up_blocks[:3]]
        assert repeats == [8, 8, 2] and d.up_blocks[3].avg_shortcut is None, repeats
        assert [(b.avg_shortcut.factor_t, b.avg_shortcut.factor_s) for b in d.up_blocks[:3]] == [(2, 2), (2, 2), (1, 2)]
        modes = [b.upsampler.mode if b.upsampler is not None else None for b in d.up_blocks]
    else:
        assert d.conv_out.weight.shape[0] == 3, d.conv_out.weight.shape
        modes = [b.upsamplers[0].mode if b.upsamplers is not None else None for b in d.up_blocks]
    assert modes == ["upsample3d", "upsample3d", "upsample2d", None], modes
    for m in d.modules():
        if isinstance(m, autoencoder_kl_wan.WanUpsample):
            assert m.mode == "nearest-exact" and m.scale_factor == (2.0, 2.0), (m.mode, m.scale_factor)
        if isinstance(m, autoencoder_kl_wan.WanCausalConv3d):
            k = m.kernel_size
            assert m.padding == (0, 0, 0) and m._padding == (k[2] // 2, k[2] // 2, k[1] // 2, k[1] // 2, k[0] - 1, 0)
            assert m.padding_mode == "zeros"


# ---------------------------------------------------------------------------------------------
# Names: diffusers → official (by walking the modules) and official → diffusers (from the
# names alone, as a loader would).

RESNET_LEAVES = {
    "norm1.gamma": "residual.0.gamma",
    "conv1.weight": "residual.2.weight",
    "conv1.bias": "residual.2.bias",
    "norm2.gamma": "residual.3.gamma",
    "conv2.weight": "residual.6.weight",
    "conv2.bias": "residual.6.bias",
    "conv_shortcut.weight": "shortcut.weight",
    "conv_shortcut.bias": "shortcut.bias",
}
INVERSE_LEAVES = {v: k for k, v in RESNET_LEAVES.items()}

# Encoder-side tensors that go into the official files (diffusers name → official name), so a
# loader must skip them.
ENCODER_DECOYS = {
    "w21": {
        "quant_conv.weight": "conv1.weight",
        "quant_conv.bias": "conv1.bias",
        "encoder.conv_in.weight": "encoder.conv1.weight",
        "encoder.conv_in.bias": "encoder.conv1.bias",
        "encoder.down_blocks.0.norm1.gamma": "encoder.downsamples.0.residual.0.gamma",
        "encoder.mid_block.resnets.0.norm1.gamma": "encoder.middle.0.residual.0.gamma",
        "encoder.norm_out.gamma": "encoder.head.0.gamma",
        "encoder.conv_out.bias": "encoder.head.2.bias",
    },
    "w22": {
        "quant_conv.weight": "conv1.weight",
        "quant_conv.bias": "conv1.bias",
        "encoder.conv_in.weight": "encoder.conv1.weight",
        "encoder.conv_in.bias": "encoder.conv1.bias",
        "encoder.down_blocks.0.resnets.0.norm1.gamma": "encoder.downsamples.0.downsamples.0.residual.0.gamma",
        "encoder.mid_block.resnets.0.norm1.gamma": "encoder.middle.0.residual.0.gamma",
        "encoder.norm_out.gamma": "encoder.head.0.gamma",
        "encoder.conv_out.bias": "encoder.head.2.bias",
    },
}


def is_decoder_key(name):
    return name.startswith("decoder.") or name.startswith("post_quant_conv.")


def official_prefixes(vae, layout):
    """Diffusers module prefix → official module prefix, decoder side."""
    d = vae.decoder
    out = {
        "post_quant_conv": "conv2",
        "decoder.conv_in": "decoder.conv1",
        "decoder.mid_block.resnets.0": "decoder.middle.0",
        "decoder.mid_block.attentions.0": "decoder.middle.1",
        "decoder.mid_block.resnets.1": "decoder.middle.2",
        "decoder.norm_out": "decoder.head.0",
        "decoder.conv_out": "decoder.head.2",
    }
    assert len(d.mid_block.resnets) == 2 and len(d.mid_block.attentions) == 1
    n = 0
    for i, block in enumerate(d.up_blocks):
        for j in range(len(block.resnets)):
            if layout == "2.1":
                out[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.upsamples.{n}"
                n += 1
            else:
                out[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.upsamples.{i}.upsamples.{j}"
        if layout == "2.1" and block.upsamplers is not None:
            out[f"decoder.up_blocks.{i}.upsamplers.0"] = f"decoder.upsamples.{n}"
            n += 1
        if layout == "2.2" and block.upsampler is not None:
            out[f"decoder.up_blocks.{i}.upsampler"] = f"decoder.upsamples.{i}.upsamples.{len(block.resnets)}"
    return out


def official_name(name, prefixes):
    for prefix, official in prefixes.items():
        if name.startswith(prefix + "."):
            leaf = name[len(prefix) + 1:]
            if ".resnets." in prefix:
                leaf = RESNET_LEAVES[leaf]
            return f"{official}.{leaf}"
    raise KeyError(name)


def official_state(vae, version, dtype):
    """The official state dict: decoder + `conv2`, then the encoder-side decoys."""
    layout = VERSIONS[version]["layout"]
    prefixes = official_prefixes(vae, layout)
    state = vae.state_dict()
    out = {}
    for name, t in state.items():
        if is_decoder_key(name):
            out[official_name(name, prefixes)] = t.to(dtype).contiguous()
    decoder_names = [n for n in state if is_decoder_key(n)]
    assert len(out) == len(decoder_names), "two decoder tensors got the same official name"
    for name, official in ENCODER_DECOYS[version].items():
        assert official not in out
        out[official] = state[name].to(dtype).contiguous()
    return dict(sorted(out.items(), key=lambda kv: natural_key(kv[0])))


def natural_key(name):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def diffusers_from_official(state):
    """Official → diffusers names for the decoder tensors, from the names alone: the layout is
    2.2 iff a `decoder.upsamples.i.upsamples.j` name exists; a module holding `resample.1.weight`
    is a Resample and ends its up block (2.1: flat indices in order). Encoder tensors
    (`encoder.*`, `conv1.*`) are left out."""
    keys = [k for k in state if k.startswith("decoder.") or k.startswith("conv2.")]
    nested = any(re.match(r"decoder\.upsamples\.\d+\.upsamples\.\d+\.", k) for k in keys)
    out = {}
    if nested:
        def up_prefix(rest):
            m = re.match(r"(\d+)\.upsamples\.(\d+)\.(.*)", rest)
            i, j, leaf = int(m[1]), int(m[2]), m[3]
            is_resample = f"decoder.upsamples.{i}.upsamples.{j}.resample.1.weight" in state
            prefix = f"decoder.up_blocks.{i}.upsampler" if is_resample else f"decoder.up_blocks.{i}.resnets.{j}"
            return prefix, leaf, is_resample
    else:
        flat = sorted({int(m[1]) for k in keys if (m := re.match(r"decoder\.upsamples\.(\d+)\.", k))})
        assert flat == list(range(len(flat))), flat
        where, block, j = {}, 0, 0
        for n in flat:
            if f"decoder.upsamples.{n}.resample.1.weight" in state:
                where[n] = f"decoder.up_blocks.{block}.upsamplers.0"
                block, j = block + 1, 0
            else:
                where[n] = f"decoder.up_blocks.{block}.resnets.{j}"
                j += 1

        def up_prefix(rest):
            m = re.match(r"(\d+)\.(.*)", rest)
            n = int(m[1])
            return where[n], m[2], where[n].endswith(".upsamplers.0")

    for k in keys:
        if k.startswith("conv2."):
            out["post_quant_conv." + k[len("conv2."):]] = state[k]
            continue
        rest = k[len("decoder."):]
        if rest.startswith("conv1."):
            new = "decoder.conv_in." + rest[len("conv1."):]
        elif rest.startswith("middle.1."):
            new = "decoder.mid_block.attentions.0." + rest[len("middle.1."):]
        elif m := re.match(r"middle\.([02])\.(.*)", rest):
            new = f"decoder.mid_block.resnets.{int(m[1]) // 2}.{INVERSE_LEAVES[m[2]]}"
        elif rest.startswith("head.0."):
            new = "decoder.norm_out." + rest[len("head.0."):]
        elif rest.startswith("head.2."):
            new = "decoder.conv_out." + rest[len("head.2."):]
        elif rest.startswith("upsamples."):
            prefix, leaf, is_resample = up_prefix(rest[len("upsamples."):])
            new = f"{prefix}.{leaf if is_resample else INVERSE_LEAVES[leaf]}"
        else:
            raise KeyError(k)
        assert new not in out, new
        out[new] = state[k]
    return out


def doc_shapes(layout, z, base, num_res_blocks, out_channels):
    """Official decoder names and shapes from §5.2's patterns. Up block widths (out) are
    4b, 4b, 2b, b; in 2.1 each Resample halves its channels and the next block's input is that
    half, in 2.2 Resamples keep their channels; blocks 0, 1 have upsample3d, block 2 upsample2d."""
    shapes = {}

    def conv(name, o, i, k):
        shapes[f"{name}.weight"] = (o, i, *k)
        shapes[f"{name}.bias"] = (o,)

    def resblock(prefix, cin, cout):
        shapes[f"{prefix}.residual.0.gamma"] = (cin, 1, 1, 1)
        conv(f"{prefix}.residual.2", cout, cin, (3, 3, 3))
        shapes[f"{prefix}.residual.3.gamma"] = (cout, 1, 1, 1)
        conv(f"{prefix}.residual.6", cout, cout, (3, 3, 3))
        if cin != cout:
            conv(f"{prefix}.shortcut", cout, cin, (1, 1, 1))

    c0 = 4 * base
    conv("conv2", z, z, (1, 1, 1))
    conv("decoder.conv1", c0, z, (3, 3, 3))
    resblock("decoder.middle.0", c0, c0)
    shapes["decoder.middle.1.norm.gamma"] = (c0, 1, 1)
    conv("decoder.middle.1.to_qkv", 3 * c0, c0, (1, 1))
    conv("decoder.middle.1.proj", c0, c0, (1, 1))
    resblock("decoder.middle.2", c0, c0)
    widths = [4 * base, 4 * base, 2 * base, base]
    kinds = ["upsample3d", "upsample3d", "upsample2d", None]
    cin, n = c0, 0
    for i, (cout, kind) in enumerate(zip(widths, kinds)):
        for j in range(num_res_blocks + 1):
            prefix = f"decoder.upsamples.{n}" if layout == "2.1" else f"decoder.upsamples.{i}.upsamples.{j}"
            resblock(prefix, cin, cout)
            cin, n = cout, n + 1
        if kind is None:
            continue
        j = num_res_blocks + 1
        prefix = f"decoder.upsamples.{n}" if layout == "2.1" else f"decoder.upsamples.{i}.upsamples.{j}"
        n += 1
        half = cout // 2 if layout == "2.1" else cout
        conv(f"{prefix}.resample.1", half, cout, (3, 3))
        if kind == "upsample3d":
            conv(f"{prefix}.time_conv", 2 * cout, cout, (3, 1, 1))
        cin = half
    shapes["decoder.head.0.gamma"] = (base, 1, 1, 1)
    conv("decoder.head.2", out_channels, base, (3, 3, 3))
    return shapes


def check_names(vae, version, official):
    spec = VERSIONS[version]
    state = vae.state_dict()
    decoder = {k: v for k, v in state.items() if is_decoder_key(k)}
    back = diffusers_from_official(official)
    assert set(back) == set(decoder), set(back) ^ set(decoder)
    for k, v in back.items():
        assert torch.equal(v.float(), decoder[k].to(v.dtype).float()), k
    cfg = vae.config
    base = cfg.decoder_base_dim or cfg.base_dim
    out_channels = 12 if spec["layout"] == "2.2" else 3
    want = doc_shapes(spec["layout"], cfg.z_dim, base, cfg.num_res_blocks, out_channels)
    got = {k: tuple(v.shape) for k, v in official.items() if k.startswith("decoder.") or k.startswith("conv2.")}
    assert got == want, set(got.items()) ^ set(want.items())
    params = sum(v.numel() for v in decoder.values())
    print(f"{version}: {len(decoder)} decoder tensors (+ conv2), {params} parameters; renaming is a bijection, "
          f"shapes are §5.2's")


# ---------------------------------------------------------------------------------------------
# The reference decode.


@contextmanager
def float64_upsample():
    """Lets diffusers' nearest upsample run in the input dtype instead of rounding to f32."""
    cls = autoencoder_kl_wan.WanUpsample
    saved = cls.forward
    cls.forward = torch.nn.Upsample.forward
    try:
        yield
    finally:
        cls.forward = saved


@contextmanager
def recording(vae):
    """Records the decoder schedule and the outputs of the modules the expected files keep."""
    d = vae.decoder
    rec = {"calls": [], "time_conv": {}}
    watched = {
        "after_conv2": vae.post_quant_conv,
        "after_conv_in": d.conv_in,
        "after_mid": d.mid_block,
        "after_up0": d.up_blocks[0],
        "after_up1": d.up_blocks[1],
        "after_up2": d.up_blocks[2],
        "after_up3": d.up_blocks[3],
        "raw": d.conv_out,
    }
    handles = []

    def keep(key):
        rec[key] = []

        def hook(module, args, output):
            rec[key].append(output.detach().clone())
        return hook

    for key, module in watched.items():
        handles.append(module.register_forward_hook(keep(key)))

    def decoder_call(module, args, kwargs):
        first, cached = bool(kwargs.get("first_chunk", False)), kwargs.get("feat_cache") is not None
        rec["calls"].append((args[0].shape[2], first, cached))

    handles.append(d.register_forward_pre_hook(decoder_call, with_kwargs=True))
    for name, m in d.named_modules():
        if name.endswith("time_conv"):
            rec["time_conv"][name] = []
            def count(module, args, name=name):
                rec["time_conv"][name].append(args[0].shape[2])
            handles.append(m.register_forward_pre_hook(count))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()
        for key in watched:
            rec[key] = torch.cat(rec[key], dim=2)


def reference_decode(vae, latent, exact_upsample=True):
    """`vae.decode` in float64 on a copy. Returns the clamped [1, 3, F, H, W] output and the
    recorded intermediates ([1, c, t, h, w], `raw` = head conv output before unpatchify)."""
    ref = copy.deepcopy(vae).double()
    _, _, t, h, w = latent.shape
    with torch.no_grad(), recording(ref) as rec:
        if exact_upsample:
            with float64_upsample():
                y = ref.decode(latent.double(), return_dict=False)[0]
        else:
            y = ref.decode(latent.double(), return_dict=False)[0]
    # The reference schedule (§4.1): one cached decoder call per latent frame, the first flagged.
    assert rec["calls"] == [(1, i == 0, True) for i in range(t)], rec["calls"]
    # Every time_conv runs for latent frames 1.. (a cache-less decode would skip it, §4.2).
    assert len(rec["time_conv"]) == 2
    for name, calls in rec["time_conv"].items():
        assert len(calls) == t - 1, (name, calls)
    assert y.dtype == torch.float64
    s = ref.config.scale_factor_spatial
    assert tuple(y.shape) == (1, 3, 4 * (t - 1) + 1, s * h, s * w), tuple(y.shape)
    return y, rec


def frames_of(y):
    return ((y[0] + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 3, 0).float().contiguous()


def channel_last(x):
    return x[0].permute(1, 2, 3, 0).float().contiguous()


KEPT = ["after_conv2", "after_conv_in", "after_mid", "after_up0"]


# ---------------------------------------------------------------------------------------------


def save_diffusers(vae, folder, dtype):
    os.makedirs(folder, exist_ok=True)
    vae.save_config(folder)
    state = {k: v.to(dtype).contiguous() for k, v in vae.state_dict().items()}
    save_file(state, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


def loaded_official(path, version):
    """A fresh model holding the decoder tensors of an official file (safetensors or .pth)."""
    if path.endswith(".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = load_file(path)
    vae = AutoencoderKLWan(**VERSIONS[version]["diffusers"]).eval()
    decoder = {k: v.float() for k, v in diffusers_from_official(state).items()}
    missing, unexpected = vae.load_state_dict(decoder, strict=False)
    assert not unexpected and all(not is_decoder_key(m) for m in missing), (missing, unexpected)
    return vae, state


def make(version):
    spec = VERSIONS[version]
    os.makedirs(OUT, exist_ok=True)
    vae = build(version)

    official = official_state(vae, version, spec["official_dtype"])
    check_names(vae, version, official)
    official_path = os.path.join(OUT, f"{version}.safetensors")
    save_file(official, official_path)
    pth_path = None
    if version == "w21":
        pth_path = os.path.join(OUT, f"{version}.pth")
        torch.save({k: v.to(torch.float16) for k, v in official.items()}, pth_path)
    folder = os.path.join(OUT, f"{version}-diffusers")
    save_diffusers(vae, folder, spec["folder_dtype"])

    gen = torch.Generator().manual_seed(spec["seed"] + 100)
    expected, raw = {}, {}
    for suffix, (t, h, w) in INPUTS.items():
        z = torch.randn(1, vae.config.z_dim, t, h, w, generator=gen)
        y, rec = reference_decode(vae, z)
        expected["latent" + suffix] = z
        expected["frames" + suffix] = frames_of(y)
        raw["frames" + suffix] = y
        frames = expected["frames" + suffix]
        inside = ((frames > 0) & (frames < 1)).double().mean().item()
        clamped = (rec["raw"].abs() > 1).double().mean().item()
        print(f"{version} latent{suffix} {tuple(z.shape)} -> frames{suffix} {tuple(frames.shape)}: "
              f"raw max |x| {rec['raw'].abs().max().item():.3f}, {clamped:.2%} clamped, "
              f"{inside:.2%} of the frame values strictly inside (0, 1)")
        assert clamped < 0.1 and inside > 0.85, (clamped, inside)
        plain, _ = reference_decode(vae, z, exact_upsample=False)
        err = (plain - y).abs().max().item()
        assert err < 1e-6, f"the plain diffusers decode differs by {err}"
        if suffix == "":
            print(f"{version}: plain vae.decode (f32 rounding in the upsample) differs by {err:.1e}")
            for key in KEPT:
                expected[key] = channel_last(rec[key])
            rms = {k: rec[k].pow(2).mean().sqrt().item() for k in ["after_conv2", "after_conv_in", "after_mid",
                                                                      "after_up0", "after_up1", "after_up2",
                                                                      "after_up3", "raw"]}
            print(f"{version} activation RMS: " + ", ".join(f"{k} {v:.3f}" for k, v in rms.items()))
            assert all(0.2 < v < 5.0 for v in rms.values()), rms
    save_file(expected, os.path.join(OUT, f"{version}-expected.safetensors"))
    if version == "w21":
        save_file(
            {"latent_tensor": expected["latent"], "latent_format_version_0": torch.zeros(0)},
            os.path.join(OUT, f"{version}.latent"),
            metadata={"prompt": "{}"},
        )

    # Load every file back and decode again.
    sources = [("official", official_path)] + ([("pth", pth_path)] if pth_path else [])
    for what, path in sources:
        model, state = loaded_official(path, version)
        if what == "pth":
            sft = load_file(official_path)
            assert list(state) == list(official) and set(state) == set(sft)
            for k, v in state.items():
                assert v.dtype == torch.float16 and torch.equal(v.float(), sft[k].float()), k
        else:
            assert all(v.dtype == spec["official_dtype"] for v in state.values())
        check_decodes(model, expected, raw, f"{version} {os.path.basename(path)}")
    model = AutoencoderKLWan.from_pretrained(folder, low_cpu_mem_usage=False).float().eval()
    assert all(model.config[k] == v for k, v in spec["diffusers"].items())
    check_decodes(model, expected, raw, f"{version} {os.path.basename(folder)}/")


def check_decodes(model, expected, raw, what):
    for key in expected:
        if not key.startswith("latent"):
            continue
        frames_key = "frames" + key[len("latent"):]
        y, _ = reference_decode(model, expected[key])
        err = (y - raw[frames_key]).abs().max().item()
        assert err < 1e-6, f"{what} {frames_key}: decodes differently ({err})"
    print(f"{what}: decodes to the reference")


PARTS = {"w21": lambda: make("w21"), "w22": lambda: make("w22")}


def main():
    torch.set_num_threads(1)
    parts = sys.argv[1:] or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        sys.exit(f"usage: make_wan_fixtures.py [{' | '.join(PARTS)}]...  (unknown: {' '.join(unknown)})")
    for part in parts:
        PARTS[part]()


if __name__ == "__main__":
    main()
