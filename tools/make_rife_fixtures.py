#!/usr/bin/env python3
"""Builds the RIFE 4.x (IFNet) frame-interpolation fixtures under tests/fixtures/rife/.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch safetensors
    /tmp/venv/bin/python tools/make_rife_fixtures.py                # every layout
    /tmp/venv/bin/python tools/make_rife_fixtures.py v46 v426       # some layouts
    /tmp/venv/bin/python tools/make_rife_fixtures.py --vsrife DIR --comfy FILE   # + cross-checks

Each layout rewrites only its own files and is deterministic (checked with torch 2.15.0,
safetensors 0.8.0 on CPU, one thread: two runs give byte-identical files).

The network is this file's own PyTorch statement of the released IFNet_HDv3 (Practical-RIFE
train_log / vs-rife), with the released module and parameter names, so the weight files look
like real releases apart from their widths. The layouts, verified against vs-rife 5.6.0's
modules (see the notes on RIFE's architecture for the full table); in the order they run:

  v45  — RIFE 4.5 (no feature encoder; lastconv ConvTranspose2d(c, 4·5, 4, 2, 1) +
         PixelShuffle(2): flow 4 + mask 1, nothing else): 4 blocks, in_planes 7 / 12, the mask
         accumulates over blocks (mask = mask + m), scale_list 8,4,2,1, padding multiple 32.
  v46  — RIFE 4.6 (same graph as 4.5 except lastconv 4·6; no feature encoder): 4 blocks,
         in_planes 7 / 12, lastconv ConvTranspose2d(c, 4·6, 4, 2, 1) + PixelShuffle(2), the mask
         accumulates over blocks (mask = mask + m), scale_list 8,4,2,1, padding multiple 32.
  v49  — RIFE 4.7–4.9 (identical code in vs-rife): encoder nn.Sequential `encode.0`
         Conv2d(3, 16, 3, 2, 1) → `encode.1` ConvTranspose2d(16, 4, 4, 2, 1), no activation, no
         clamp inside, 4 feature channels: 4 blocks, in_planes 7+8 / 8+4+8, lastconv 4·6, each
         block's mask replaces the last (mask = m), scale_list 8,4,2,1, padding multiple 32.
  v412 — RIFE 4.10–4.12 (identical code in vs-rife): encoder nn.Sequential `encode.0`
         Conv2d(3, 32, 3, 2, 1), LeakyReLU(0.2), `encode.2` Conv2d(32, 32, 3, 1, 1), LeakyReLU,
         `encode.4` Conv2d(32, 32, 3, 1, 1), LeakyReLU, `encode.6` ConvTranspose2d(32, 8, 4, 2, 1)
         (no final activation, no clamp inside), 8 feature channels: in_planes 7+16 / 8+4+16,
         otherwise as v49.
  v414lite — RIFE 4.14.lite: exactly 4.14 (= v418: Head 3→32→32→32→8, block widths
         192/128/96/64 in the release) except that every ResConv conv has groups=2
         (`convblock.j.conv.weight` [c, c/2, 3, 3]).
  v418 — RIFE 4.13–4.20 and 4.24 (the `Head` encoder `encode.cnn0..cnn3`, 3→32→32→32→8): 4 blocks,
         in_planes 7+16 / 8+4+16, lastconv 4·6, each block's mask replaces the last
         (mask = m), scale_list 8,4,2,1, padding multiple 32. Sub-variants that differ only in
         widths are not built: the other lite models (Head 3→16→16→16→4, or for 4.12.lite and
         4.13.lite the seq7 encoder with 4 outputs; narrower blocks).
  v422 — RIFE 4.21–4.23 (Head 32→8, lastconv 4·13: flow 4, mask 1, 8 feature channels passed
         to the next block): 4 blocks, in_planes 7+16 / 8+4+16+8, scale_list 8,4,2,1, padding
         multiple 32.
  v426 — RIFE 4.25 / 4.26 (Head 3→16→16→16→4, lastconv 4·13): 5 blocks, in_planes 7+8 /
         8+4+8+8, scale_list 16,8,4,2,1, padding multiple 64.

Widths: blocks 10, 8, 6, 4 (v426: 10, 8, 6, 4, 4) instead of 192/128/96/64(/32); the encoder
keeps its released widths (it is small). Weights are drawn from a fixed seed per layout
(Conv2d weights N(0, 1/fan_in), ConvTranspose2d N(0, 1/(4·in)), biases N(0, 0.05²), ResConv
`beta` uniform in [0.5, 1.5]), then calibrated on pair 0 at t = 0.5 (float64), block by block
in forward order: the encoder's last layer (a ConvTranspose2d) so the features have std 1; each
block's lastconv output groups (a ConvTranspose2d channel group 4k..4k+3 becomes PixelShuffle
channel k) so that the flow the block adds has std FLOW_STD[i] px (1.5, 0.8, 0.5, 0.4, 0.3), the
mask channel std 1.2 (v45, v46: 0.7 per block, as it accumulates) and the passed features
std 1. Final flows are then a few px (up to ~10 px), fractional, and some point outside the
padded frame, so warp samples between pixels and clamps at the border (the script prints the
ranges). All weights are f32; the references are computed from exactly those f32 values.

Inputs: 4 frames, 70 wide × 38 high (a multiple of no padding), RGB in [0, 1]: a smooth
gradient background, moving coloured Gaussian blobs and a drifting sine band (not noise).

Reference run (float64, weights and inputs cast to double), as vs-rife's `rife()` does it:
pad each frame with zeros at the right and bottom to a multiple of max(M, int(M / scale))
(M = 32, 64 for v426), encode each padded frame with `encode` (if any), clamp to [0, 1], run IFNet
with a constant timestep plane t and scale_list [s / scale for s in scale_list], crop back to
38 × 70. scale is 1 unless a name says otherwise (vs-rife accepts 0.25, 0.5, 1, 2, 4 for every
model). No ensemble (vs-rife's and Practical-RIFE's default; ComfyUI never passes its `ensemble`
flag through either).

Files (tests/fixtures/rife/):

  * `<layout>.safetensors`: the state dict, f32, released names without the `module.` prefix
    (what vs-rife loads after stripping it), no metadata.
  * `v426.pkl`: `torch.save` of the v426 state dict with every key prefixed `module.` (as the
    released flownet.pkl files are, saved from DistributedDataParallel), loadable with
    `torch.load(weights_only=True)`, plus training-only decoys that the releases since 4.18 carry
    and a loader must ignore: `module.teacher.*` (an IFBlock, width 4 here) and
    `module.caltime.{0,2,4,6,8}.{weight,bias}` (shapes illustrative).
  * `<layout>_reference.safetensors` (all f32, channel-last; one metadata entry `rife`, a JSON
    object of strings: layout, release, widths, scale_list, pad_multiple, padded_size,
    encoder_channels, lastconv_channels; v45, v49, v412, v414lite also encoder (none, seq2,
    seq7, head) and resconv_groups):
      - `frames` [4, 38, 70, 3]: the input frames (the same in every layout).
      - `t0.25`, `t0.5`, `t0.75` [3, 38, 70, 3]: the frame interpolated at that t between
        frames i and i+1, for i = 0, 1, 2 (v45, v49, v412, v414lite, v422: `t0.5` only, and
        nothing else but `frames`).
      - v418 only: `scale0.5_t0.5` [3, 38, 70, 3] (scale = 0.5: scale_list 16,8,4,2, padding 64).
      - intermediates of pair 0, t = 0.5, scale 1, at the padded size ph × pw (v46, v418:
        64 × 96; v426: 64 × 128; only these three): `pad_frame0` [ph, pw, 3] (frame 0, padded),
        `features0` [ph, pw, C] (encoder output of frame 0; C = 8 for v418, 4 for v426),
        `flow_block{i}` [ph, pw, 4] and `mask_block{i}` [ph, pw, 1]: flow and mask after block
        i's update (the mask before the final sigmoid).
  * `v426_scales_reference.safetensors` (v426 only; all f32, channel-last; metadata `rife` as
    above without padded_size, plus scales "2,4,0.25" and padded_sizes "64x128,64x128,256x256"):
      - `frames` [4, 38, 70, 3]: the same input frames.
      - `scale2_t0.5`, `scale4_t0.5`, `scale0.25_t0.5` [3, 38, 70, 3]: t = 0.5 between frames i
        and i+1 at that scale: scale 2: scale_list 8,4,2,1,0.5 (the last block runs at twice the
        padded size), padding max(64, 32) = 64 (64 × 128); scale 4: 4,2,1,0.5,0.25, padding 64
        (64 × 128); scale 0.25: 64,32,16,8,4, padding max(64, 256) = 256 (256 × 256; block 0
        sees 4 × 4). At scales 2 and 4 about 1% of the pixels are exactly 0: both warps sample
        the zero padding there (as vs-rife does too).

Checks (assertions): the state-dict names and shapes are the released ones at these widths
(written out independently of the modules); the layout is recognised back from the keys alone
(encoder kind from encode.cnn3 / encode.6 / encode.1, ResConv groups from the conv weight);
the .pkl file loads back to the same tensors; a float32 run agrees with the float64 reference
(< 1e-4; ~1e-5 observed, printed); outputs lie in [0, 1] and intermediates stay finite.

Cross-checks (optional; the code they run stays outside this repository):
  --vsrife DIR: DIR holds vs-rife's vsrife/IFNet_HDv3_v4_{5,6,7,8,9,10,11,12,14_lite,18,22,26}.py
    and warplayer.py (v49 is checked against each of 4.7, 4.8, 4.9 and v412 against each of
    4.10, 4.11, 4.12). Those released modules are built with this file's block widths in place
    of the released ones (their own IFBlock class, their in_planes; nothing else changed),
    loaded the way vs-rife loads (the .pkl through its `module.`-stripping, non-strict load; no
    key may be missing; the encoder a separate module loaded strictly from the `encode.` keys),
    run with vs-rife's padding, timestep plane, grid and encode calls, at each reference's scale
    (`scale0.5_t0.5`, and v426's scales 2, 4, 0.25 through IFNet(scale)), and must match the
    references to 1e-6 in float64 (their warp casts to float32, so for the float64 run it is
    replaced by the same formula without the cast) and to 1e-4 unmodified in float32.
  --comfy FILE: FILE is ComfyUI-Frame-Interpolation's vfi_models/rife/rife_arch.py (arch 4.5
    for v45, 4.6, 4.7 for v49, 4.10 for v412, 4.17 for v418, 4.26; none for v414lite, v422;
    `comfy.model_management` is stubbed). It pads to a multiple of 64 whatever the
    scale, so it is compared with this file's network run with that padding, to 1e-6 in
    float64, called as the ComfyUI node calls it.
  Both gave bit-identical float64 results (max |diff| 0) with vs-rife 5.6.0 and ComfyUI-Frame-
  Interpolation 1.0.11.
"""
import argparse
import copy
import importlib
import importlib.util
import json
import math
import os
import re
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "rife")

H, W, NFRAMES = 38, 70, 4
TIMESTEPS = (0.25, 0.5, 0.75)

LAYOUTS = {
    # enc: (hidden width, output channels) of the feature encoder, or None; encoder: its kind
    # ("seq2", "seq7" — see sequential_encoder —, "head", "none"; "head" if not given).
    # nout: PixelShuffle output channels of lastconv (flow 4, mask 1, then features or 1 unused).
    # mask: "add" — the block's mask is added to the running one (≤ 4.6); "set" — it replaces it.
    # groups: ResConv groups (1 if not given). vsrife: the vs-rife module(s) to cross-check with.
    # compact: references `frames` and `t0.5` only. extra_scales: the scales of
    # <layout>_scales_reference.safetensors (`scale<s>_t0.5` each).
    "v45": dict(widths=[10, 8, 6, 4], enc=None, encoder="none", groups=1, nout=5, mask="add",
                scales=[8, 4, 2, 1], modulo=32, seed=4500, release="4.5", comfy="4.5",
                vsrife="IFNet_HDv3_v4_5", compact=True),
    "v46": dict(widths=[10, 8, 6, 4], enc=None, nout=6, mask="add", scales=[8, 4, 2, 1], modulo=32,
                seed=4600, release="4.6", comfy="4.6", vsrife="IFNet_HDv3_v4_6"),
    "v49": dict(widths=[10, 8, 6, 4], enc=(16, 4), encoder="seq2", groups=1, nout=6, mask="set",
                scales=[8, 4, 2, 1], modulo=32, seed=4900, release="4.9", comfy="4.7",
                vsrife=("IFNet_HDv3_v4_7", "IFNet_HDv3_v4_8", "IFNet_HDv3_v4_9"), compact=True),
    "v412": dict(widths=[10, 8, 6, 4], enc=(32, 8), encoder="seq7", groups=1, nout=6, mask="set",
                 scales=[8, 4, 2, 1], modulo=32, seed=4120, release="4.12", comfy="4.10",
                 vsrife=("IFNet_HDv3_v4_10", "IFNet_HDv3_v4_11", "IFNet_HDv3_v4_12"), compact=True),
    "v414lite": dict(widths=[10, 8, 6, 4], enc=(32, 8), encoder="head", groups=2, nout=6, mask="set",
                     scales=[8, 4, 2, 1], modulo=32, seed=4141, release="4.14.lite", comfy=None,
                     vsrife="IFNet_HDv3_v4_14_lite", compact=True),
    "v418": dict(widths=[10, 8, 6, 4], enc=(32, 8), nout=6, mask="set", scales=[8, 4, 2, 1], modulo=32,
                 seed=4180, release="4.18", comfy="4.17", vsrife="IFNet_HDv3_v4_18", scale05=True),
    "v422": dict(widths=[10, 8, 6, 4], enc=(32, 8), nout=13, mask="set", scales=[8, 4, 2, 1], modulo=32,
                 seed=4220, release="4.22", comfy=None, vsrife="IFNet_HDv3_v4_22", compact=True),
    "v426": dict(widths=[10, 8, 6, 4, 4], enc=(16, 4), nout=13, mask="set", scales=[16, 8, 4, 2, 1],
                 modulo=64, seed=4260, release="4.26", comfy="4.26", vsrife="IFNet_HDv3_v4_26", pkl=True,
                 decoys=True, extra_scales=(2.0, 4.0, 0.25)),
}

# Std (px) of the flow each block adds, on the calibration run.
FLOW_STD = [1.5, 0.8, 0.5, 0.4, 0.3]


# ---------------------------------------------------------------------------------------------
# The network (released module names: blockN.conv0.{0,1}.0, blockN.convblock.{0..7}.{conv,beta},
# blockN.lastconv.0, encode.cnn{0..3}).


def resize(x, factor):
    """F.interpolate bilinear, align_corners=False, by a power-of-two factor (no antialias)."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def warp(img, flow):
    """Backward warp: out(y, x) = img sampled at (x + flow_x, y + flow_y), bilinear, coordinates
    clamped to the image (grid_sample, padding_mode border, align_corners=True), with the grid
    built as the releases build it: linspace(-1, 1) plus flow / ((size - 1) / 2)."""
    _, _, h, w = img.shape
    gx = torch.linspace(-1.0, 1.0, w, dtype=flow.dtype).view(1, 1, w) + flow[:, 0] / ((w - 1.0) / 2.0)
    gy = torch.linspace(-1.0, 1.0, h, dtype=flow.dtype).view(1, h, 1) + flow[:, 1] / ((h - 1.0) / 2.0)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


def conv_act(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class ResConv(nn.Module):
    """x ↦ LeakyReLU_0.2(conv3x3(x) · beta + x), beta per channel [1, c, 1, 1] (4.14.lite: the
    conv has groups=2)."""

    def __init__(self, c, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, groups=groups)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x):
        return F.leaky_relu(self.conv(x) * self.beta + x, 0.2)


class IFBlock(nn.Module):
    def __init__(self, cin, c, nout, groups=1):
        super().__init__()
        self.conv0 = nn.Sequential(conv_act(cin, c // 2, 2), conv_act(c // 2, c, 2))
        self.convblock = nn.Sequential(*[ResConv(c, groups) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * nout, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x, flow, scale):
        """Runs at 1/scale of the input size; returns (flow delta, mask, features) at full size."""
        x = resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat([x, resize(flow, 1.0 / scale) / scale], 1)
        out = resize(self.lastconv(self.convblock(self.conv0(x))), scale)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


class Head(nn.Module):
    """encode: conv3x3 s2 → LReLU → conv3x3 → LReLU → conv3x3 → LReLU → deconv4x4 s2."""

    def __init__(self, hidden, cout):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, hidden, 3, 2, 1)
        self.cnn1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn2 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(hidden, cout, 4, 2, 1)

    def forward(self, x):
        x = x.clamp(0.0, 1.0)
        x = F.leaky_relu(self.cnn0(x), 0.2)
        x = F.leaky_relu(self.cnn1(x), 0.2)
        x = F.leaky_relu(self.cnn2(x), 0.2)
        return self.cnn3(x)


def sequential_encoder(kind, hidden, cout):
    """The 4.7–4.12 encoders, an nn.Sequential (keys encode.<index>.*; no clamp inside):
    seq2 (4.7–4.9): Conv2d(3, 16, 3, 2, 1) → ConvTranspose2d(16, 4, 4, 2, 1), no activation;
    seq7 (4.10–4.12): Conv2d(3, 32, 3, 2, 1) → LReLU → Conv2d(32, 32, 3, 1, 1) → LReLU →
    Conv2d(32, 32, 3, 1, 1) → LReLU → ConvTranspose2d(32, 8, 4, 2, 1)."""
    if kind == "seq2":
        return nn.Sequential(nn.Conv2d(3, hidden, 3, 2, 1), nn.ConvTranspose2d(hidden, cout, 4, 2, 1))
    assert kind == "seq7", kind
    return nn.Sequential(
        nn.Conv2d(3, hidden, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(hidden, cout, 4, 2, 1))


def encoder_kind(spec):
    return spec.get("encoder", "head") if spec["enc"] else "none"


def encoder_last(net):
    """The encoder's last layer (a ConvTranspose2d)."""
    return net.encode.cnn3 if encoder_kind(net.spec) == "head" else net.encode[-1]


def in_planes(spec):
    enc = spec["enc"][1] if spec["enc"] else 0
    feat = spec["nout"] - 5 if spec["nout"] == 13 else 0
    first = 3 + 3 + 2 * enc + 1
    later = 3 + 3 + 2 * enc + 1 + 1 + feat + 4
    return [first] + [later] * (len(spec["widths"]) - 1)


class IFNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.nblocks = len(spec["widths"])
        for i, (cin, c) in enumerate(zip(in_planes(spec), spec["widths"])):
            self.add_module(f"block{i}", IFBlock(cin, c, spec["nout"], spec.get("groups", 1)))
        if encoder_kind(spec) == "head":
            self.encode = Head(*spec["enc"])
        elif spec["enc"]:
            self.encode = sequential_encoder(encoder_kind(spec), *spec["enc"])
        self.passes_features = spec["nout"] == 13

    def forward(self, img0, img1, t, scale=1.0, record=None):
        """img0, img1: [1, 3, ph, pw] padded frames. Returns the interpolated padded frame."""
        f0 = f1 = None
        if self.spec["enc"]:
            # vs-rife encodes the padded frames as they are (Head clamps them itself, the
            # Sequential encoders of 4.7–4.12 do not); the same for inputs in [0, 1].
            f0, f1 = self.encode(img0), self.encode(img1)
        img0, img1 = img0.clamp(0.0, 1.0), img1.clamp(0.0, 1.0)
        tplane = torch.full_like(img0[:, :1], t)
        scales = [s / scale for s in self.spec["scales"]]
        if record is not None:
            record["pad_frame0"] = img0
            if f0 is not None:
                record["features0"] = f0
        flow = mask = feat = None
        warped0, warped1 = img0, img1
        for i in range(self.nblocks):
            block = getattr(self, f"block{i}")
            if i == 0:
                parts = [img0, img1] + ([f0, f1] if f0 is not None else []) + [tplane]
                dflow, m, feat_new = block(torch.cat(parts, 1), None, scales[i])
                flow, mask = dflow, m
            else:
                parts = [warped0, warped1]
                if f0 is not None:
                    parts += [warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])]
                parts += [tplane, mask]
                if self.passes_features:
                    parts.append(feat)
                dflow, m, feat_new = block(torch.cat(parts, 1), flow, scales[i])
                flow = flow + dflow
                mask = mask + m if self.spec["mask"] == "add" else m
            feat = feat_new
            if record is not None:
                record[f"raw{i}"] = (dflow, m, feat_new)
                record[f"flow_block{i}"] = flow
                record[f"mask_block{i}"] = mask
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        a = torch.sigmoid(mask)
        return warped0 * a + warped1 * (1 - a)


def pad_size(spec, scale, h=H, w=W, multiple=None):
    """vs-rife's padding: to a multiple of max(M, M / scale); `multiple` overrides it."""
    m = spec["modulo"]
    tmp = multiple or max(m, int(m / scale))
    return math.ceil(h / tmp) * tmp, math.ceil(w / tmp) * tmp


def interpolate(net, frame0, frame1, t, scale=1.0, record=None, multiple=None):
    """frame0/1: [1, 3, H, W] in the net's dtype. Pads, runs, crops back."""
    h, w = frame0.shape[2:]
    ph, pw = pad_size(net.spec, scale, h, w, multiple)
    pad = (0, pw - w, 0, ph - h)
    out = net(F.pad(frame0, pad), F.pad(frame1, pad), t, scale, record)
    return out[:, :, :h, :w]


# ---------------------------------------------------------------------------------------------
# Released names and shapes, written out from the published architecture (not from the modules).


def release_shapes(spec):
    shapes = {}
    nout = spec["nout"]
    groups = spec.get("groups", 1)
    for i, (cin, c) in enumerate(zip(in_planes(spec), spec["widths"])):
        p = f"block{i}"
        shapes[f"{p}.conv0.0.0.weight"] = (c // 2, cin, 3, 3)
        shapes[f"{p}.conv0.0.0.bias"] = (c // 2,)
        shapes[f"{p}.conv0.1.0.weight"] = (c, c // 2, 3, 3)
        shapes[f"{p}.conv0.1.0.bias"] = (c,)
        for j in range(8):
            shapes[f"{p}.convblock.{j}.beta"] = (1, c, 1, 1)
            shapes[f"{p}.convblock.{j}.conv.weight"] = (c, c // groups, 3, 3)
            shapes[f"{p}.convblock.{j}.conv.bias"] = (c,)
        shapes[f"{p}.lastconv.0.weight"] = (c, 4 * nout, 4, 4)
        shapes[f"{p}.lastconv.0.bias"] = (4 * nout,)
    if encoder_kind(spec) == "seq2":
        hid, cout = spec["enc"]
        shapes["encode.0.weight"] = (hid, 3, 3, 3)
        shapes["encode.0.bias"] = (hid,)
        shapes["encode.1.weight"] = (hid, cout, 4, 4)
        shapes["encode.1.bias"] = (cout,)
    elif encoder_kind(spec) == "seq7":
        hid, cout = spec["enc"]
        shapes["encode.0.weight"] = (hid, 3, 3, 3)
        shapes["encode.0.bias"] = (hid,)
        shapes["encode.2.weight"] = (hid, hid, 3, 3)
        shapes["encode.2.bias"] = (hid,)
        shapes["encode.4.weight"] = (hid, hid, 3, 3)
        shapes["encode.4.bias"] = (hid,)
        shapes["encode.6.weight"] = (hid, cout, 4, 4)
        shapes["encode.6.bias"] = (cout,)
    elif spec["enc"]:
        hid, cout = spec["enc"]
        shapes["encode.cnn0.weight"] = (hid, 3, 3, 3)
        shapes["encode.cnn0.bias"] = (hid,)
        shapes["encode.cnn1.weight"] = (hid, hid, 3, 3)
        shapes["encode.cnn1.bias"] = (hid,)
        shapes["encode.cnn2.weight"] = (hid, hid, 3, 3)
        shapes["encode.cnn2.bias"] = (hid,)
        shapes["encode.cnn3.weight"] = (hid, cout, 4, 4)
        shapes["encode.cnn3.bias"] = (cout,)
    return shapes


def detect_layout(state):
    """The layout from the keys and shapes alone, as a loader would do it (`module.` stripped,
    anything outside block*/encode.* ignored)."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    blocks = sorted({int(m[1]) for k in state if (m := re.match(r"block(\d+)\.", k))})
    assert blocks == list(range(len(blocks))), blocks
    assert "block0.convblock.0.beta" in state, "plain-conv convblock (4.0–4.4) not built here"
    nout = state["block0.lastconv.0.weight"].shape[1] // 4
    widths = [state[f"block{i}.convblock.0.conv.weight"].shape[0] for i in blocks]
    groups = widths[0] // state["block0.convblock.0.conv.weight"].shape[1]
    enc, kind = None, "none"
    for key, k in (("encode.cnn3.weight", "head"), ("encode.6.weight", "seq7"), ("encode.1.weight", "seq2")):
        if key in state:  # ConvTranspose2d weight [hidden, out, 4, 4]
            enc, kind = tuple(state[key].shape[:2]), k
            break
    assert not any(k.startswith("encode.") for k in state) or enc, "unknown encoder"
    if len(blocks) == 5:
        name = "v426"
    elif nout == 13:
        name = "v422"
    elif nout == 5:
        name = "v45"
    elif kind == "head":
        name = "v414lite" if groups == 2 else "v418"
    elif kind == "seq7":
        name = "v412"
    elif kind == "seq2":
        name = "v49"
    else:
        name = "v46"
    spec = LAYOUTS[name]
    assert (nout, enc, widths, kind, groups) == (
        spec["nout"], spec["enc"], spec["widths"], encoder_kind(spec), spec.get("groups", 1)), (
        name, nout, enc, widths, kind, groups)
    first = state["block0.conv0.0.0.weight"].shape[1]
    assert first == in_planes(spec)[0]
    return name


# ---------------------------------------------------------------------------------------------
# Weights.


def init_weights(net, seed):
    gen = torch.Generator().manual_seed(seed)
    modules = dict(net.named_modules())
    with torch.no_grad():
        for name, p in net.named_parameters():
            owner = modules[name.rsplit(".", 1)[0]]
            if name.endswith(".beta"):
                v = torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.5
            elif name.endswith(".bias"):
                v = torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.05
            elif isinstance(owner, nn.ConvTranspose2d):
                v = torch.randn(p.shape, generator=gen, dtype=torch.float64) / (4 * p.shape[0]) ** 0.5
            else:
                assert isinstance(owner, nn.Conv2d), name
                v = torch.randn(p.shape, generator=gen, dtype=torch.float64) / p[0].numel() ** 0.5
            p.copy_(v)


def scale_group(deconv, channels, factor):
    """Scales the ConvTranspose2d outputs that PixelShuffle(2) turns into `channels`."""
    for c in channels:
        deconv.weight[:, 4 * c:4 * c + 4] *= factor
        deconv.bias[4 * c:4 * c + 4] *= factor


def calibrate(net, frames):
    """Sets output scales, encoder first, then block by block (see the module docstring)."""
    spec = net.spec
    f0, f1 = frames[0:1], frames[1:2]
    with torch.no_grad():
        if spec["enc"]:
            rec = {}
            interpolate(net.double(), f0, f1, 0.5, record=rec)
            std = rec["features0"].std().item()
            encoder_last(net).weight.mul_(1.0 / std)
            encoder_last(net).bias.mul_(1.0 / std)
        for i in range(net.nblocks):
            rec = {}
            interpolate(net.double(), f0, f1, 0.5, record=rec)
            dflow, m, feat = rec[f"raw{i}"]
            deconv = getattr(net, f"block{i}").lastconv[0]
            scale_group(deconv, range(4), FLOW_STD[i] / dflow.std().item())
            mask_std = 0.7 if spec["mask"] == "add" else 1.2
            scale_group(deconv, [4], mask_std / m.std().item())
            if spec["nout"] == 13:
                scale_group(deconv, range(5, 13), 1.0 / feat.std().item())
    net.float()
    return net


def build(name, frames):
    spec = LAYOUTS[name]
    net = IFNet(spec)
    init_weights(net, spec["seed"])
    calibrate(net, frames.double())
    net.eval()
    state = {k: v.detach().float().contiguous() for k, v in net.state_dict().items()}
    expected = release_shapes(spec)
    assert list(state) == list(expected), (set(state) ^ set(expected))
    for k, v in state.items():
        assert tuple(v.shape) == expected[k], (k, v.shape, expected[k])
    assert detect_layout(state) == name
    return net, state


def decoys(spec, seed):
    """Training-only tensors of the 4.18+ releases (teacher IFBlock, caltime CNN), tiny shapes."""
    gen = torch.Generator().manual_seed(seed)
    enc = spec["enc"][1]
    c = 4
    teacher_in = 3 + 3 + 2 * enc + 1 + 1 + 3 + (8 if spec["nout"] == 13 else 0) + 4
    shapes = {
        "teacher.conv0.0.0.weight": (c // 2, teacher_in, 3, 3),
        "teacher.conv0.0.0.bias": (c // 2,),
        "teacher.conv0.1.0.weight": (c, c // 2, 3, 3),
        "teacher.conv0.1.0.bias": (c,),
    }
    for j in range(8):
        shapes[f"teacher.convblock.{j}.beta"] = (1, c, 1, 1)
        shapes[f"teacher.convblock.{j}.conv.weight"] = (c, c, 3, 3)
        shapes[f"teacher.convblock.{j}.conv.bias"] = (c,)
    shapes["teacher.lastconv.0.weight"] = (c, 4 * spec["nout"], 4, 4)
    shapes["teacher.lastconv.0.bias"] = (4 * spec["nout"],)
    for j, (o, i) in zip((0, 2, 4, 6, 8), ((4, 2 * enc + 9), (4, 4), (4, 4), (4, 4), (1, 4))):
        shapes[f"caltime.{j}.weight"] = (o, i, 3, 3)
        shapes[f"caltime.{j}.bias"] = (o,)
    return {k: torch.randn(s, generator=gen) * 0.1 for k, s in shapes.items()}


# ---------------------------------------------------------------------------------------------
# Inputs.


def make_frames():
    """[4, 3, H, W] float32 in [0, 1]: gradient background, moving blobs, drifting sine band."""
    y = torch.arange(H, dtype=torch.float64).view(H, 1)
    x = torch.arange(W, dtype=torch.float64).view(1, W)
    blobs = [  # (x0, y0, vx, vy, sigma, rgb)
        (18.0, 12.0, 2.6, 1.3, 5.0, (0.9, 0.2, 0.1)),
        (50.0, 26.0, -3.4, -0.7, 6.5, (0.1, 0.7, 0.9)),
        (64.0, 6.0, 1.9, 2.2, 4.0, (0.8, 0.8, 0.2)),   # leaves over the right edge
        (4.0, 33.0, -1.6, 0.9, 4.5, (0.5, 0.1, 0.8)),  # leaves over the left/bottom edges
    ]
    frames = []
    for n in range(NFRAMES):
        img = torch.empty(3, H, W, dtype=torch.float64)
        img[0] = 0.25 + 0.35 * x / W + 0.05 * n
        img[1] = 0.20 + 0.40 * y / H
        img[2] = 0.45 + 0.15 * torch.sin((x + 1.7 * n) / 6.0 + y / 9.0)
        for x0, y0, vx, vy, s, rgb in blobs:
            g = torch.exp(-((x - x0 - vx * n) ** 2 + (y - y0 - vy * n) ** 2) / (2 * s * s))
            for c in range(3):
                img[c] = img[c] * (1 - 0.8 * g) + 0.8 * g * rgb[c]
        frames.append(img.clamp(0.02, 0.98))
    return torch.stack(frames).float()


# ---------------------------------------------------------------------------------------------
# References.


def channel_last(t):
    """[1 or n, c, h, w] → [h, w, c] (single) f32 contiguous."""
    return t[0].permute(1, 2, 0).float().contiguous()


def scale_key(scale):
    """The reference name at t = 0.5 for a scale of extra_scales: scale2_t0.5, scale0.25_t0.5."""
    return f"scale{scale:g}_t0.5"


def run_all(net, frames, name, dtype):
    """The reference tensors (in `dtype`, before the f32 cast) and the pair-0 record."""
    spec = net.spec
    net = net.to(dtype)
    fr = frames.to(dtype)
    out = {}
    ts = TIMESTEPS if not spec.get("compact") else (0.5,)
    with torch.no_grad():
        for t in ts:
            out[f"t{t}"] = torch.cat([interpolate(net, fr[i:i + 1], fr[i + 1:i + 2], t) for i in range(NFRAMES - 1)])
        if spec.get("scale05"):
            out["scale0.5_t0.5"] = torch.cat(
                [interpolate(net, fr[i:i + 1], fr[i + 1:i + 2], 0.5, scale=0.5) for i in range(NFRAMES - 1)])
        for scale in spec.get("extra_scales", ()):
            out[scale_key(scale)] = torch.cat(
                [interpolate(net, fr[i:i + 1], fr[i + 1:i + 2], 0.5, scale=scale) for i in range(NFRAMES - 1)])
        rec = {}
        interpolate(net, fr[0:1], fr[1:2], 0.5, record=rec)
    return out, rec


def flow_report(name, rec, nblocks):
    flow = rec[f"flow_block{nblocks - 1}"][0].double()
    ph, pw = flow.shape[1:]
    mag = flow.view(2, 2, ph, pw).norm(dim=1)
    frac = (flow - flow.round()).abs()
    xs = torch.arange(pw, dtype=torch.float64).view(1, pw) + flow[0::2]
    ys = torch.arange(ph, dtype=torch.float64).view(ph, 1) + flow[1::2]
    outside = ((xs < 0) | (xs > pw - 1) | (ys < 0) | (ys > ph - 1)).double().mean().item()
    print(f"  {name}: final flow (pair 0, t=0.5) components [{flow.min().item():.3f}, {flow.max().item():.3f}] px, "
          f"|flow| [{mag.min().item():.3f}, {mag.max().item():.3f}] px, mean |frac| {frac.mean().item():.3f}, "
          f"samples outside the padded frame {100 * outside:.1f}%")
    for i in range(nblocks):
        d = rec[f"raw{i}"][0]
        m = rec[f"mask_block{i}"]
        print(f"    block{i}: flow delta [{d.min().item():.3f}, {d.max().item():.3f}] std {d.std().item():.3f}; "
              f"mask [{m.min().item():.3f}, {m.max().item():.3f}]")
    return flow


def write_layout(name, frames):
    spec = LAYOUTS[name]
    net, state = build(name, frames)
    save_file(state, os.path.join(OUT, f"{name}.safetensors"))
    if spec.get("pkl"):
        wrapped = {f"module.{k}": v for k, v in state.items()}
        if spec.get("decoys"):
            wrapped.update({f"module.{k}": v for k, v in decoys(spec, spec["seed"] + 7).items()})
        path = os.path.join(OUT, f"{name}.pkl")
        torch.save(wrapped, path)
        back = torch.load(path, weights_only=True)
        assert list(back) == list(wrapped) and all(torch.equal(back[k], wrapped[k]) for k in back)
        assert detect_layout(back) == name

    ref64, rec64 = run_all(net, frames, name, torch.float64)
    ref32, rec32 = run_all(net, frames, name, torch.float32)
    worst = max((ref64[k] - ref32[k]).abs().max().item() for k in ref64)
    print(f"  {name}: float32 run vs float64 reference: max |diff| {worst:.2e}")
    assert worst < 1e-4, worst
    for k in ref64:
        assert torch.isfinite(ref64[k]).all() and ref64[k].min() >= 0 and ref64[k].max() <= 1, k
    flow_report(name, rec64, net.nblocks)

    tensors = {"frames": frames.permute(0, 2, 3, 1).contiguous()}
    extra = {scale_key(s): s for s in spec.get("extra_scales", ())}
    for k, v in ref64.items():
        if k not in extra:
            tensors[k] = v.permute(0, 2, 3, 1).float().contiguous()
    if not spec.get("compact"):
        keep = ["pad_frame0", "features0"] + [f"{k}_block{i}" for i in range(net.nblocks) for k in ("flow", "mask")]
        for k in keep:
            if k in rec64:
                v = rec64[k]
                assert torch.isfinite(v).all() and v.abs().max() < 100, k
                tensors[k] = channel_last(v)
    ph, pw = pad_size(spec, 1.0)
    meta = {
        "layout": name,
        "release": spec["release"],
        "widths": ",".join(map(str, spec["widths"])),
        "scale_list": ",".join(map(str, spec["scales"])),
        "pad_multiple": str(spec["modulo"]),
        "padded_size": f"{ph}x{pw}",
        "encoder_channels": str(spec["enc"][1] if spec["enc"] else 0),
        "lastconv_channels": str(spec["nout"]),
    }
    if "encoder" in spec:  # the layouts added later (v45, v49, v412, v414lite)
        meta["encoder"] = spec["encoder"]
        meta["resconv_groups"] = str(spec.get("groups", 1))
    # One metadata entry: safetensors writes the metadata map in no fixed order.
    save_file(tensors, os.path.join(OUT, f"{name}_reference.safetensors"),
              metadata={"rife": json.dumps(meta, sort_keys=True, separators=(",", ":"))})
    if extra:
        tensors = {"frames": frames.permute(0, 2, 3, 1).contiguous()}
        for k in extra:
            tensors[k] = ref64[k].permute(0, 2, 3, 1).float().contiguous()
        sizes = [pad_size(spec, s) for s in extra.values()]
        meta = {
            "layout": name,
            "release": spec["release"],
            "widths": ",".join(map(str, spec["widths"])),
            "scale_list": ",".join(map(str, spec["scales"])),
            "pad_multiple": str(spec["modulo"]),
            "scales": ",".join(f"{s:g}" for s in extra.values()),
            "padded_sizes": ",".join(f"{ph}x{pw}" for ph, pw in sizes),
            "encoder_channels": str(spec["enc"][1] if spec["enc"] else 0),
            "lastconv_channels": str(spec["nout"]),
        }
        save_file(tensors, os.path.join(OUT, f"{name}_scales_reference.safetensors"),
                  metadata={"rife": json.dumps(meta, sort_keys=True, separators=(",", ":"))})
    return net, ref64


# ---------------------------------------------------------------------------------------------
# Cross-checks against public implementations kept outside this repository.


def load_package(path, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                  submodule_search_locations=[path])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    return pkg


def narrow(mod, net, widths, **kw):
    """Replaces the released-width blocks of the module's IFNet by the module's own IFBlock built
    with our width c (its in_planes, read from the released block, and all else unchanged)."""
    n = len([name for name, _ in net.named_children() if re.fullmatch(r"block\d+", name)])
    assert n == len(widths), (n, widths)
    for i, c in enumerate(widths):
        cin = getattr(net, f"block{i}").conv0[0][0].in_channels
        setattr(net, f"block{i}", mod.IFBlock(cin, c=c, **kw))
    return net


def warp_keep_dtype(tenInput, tenFlow, tenFlow_div, backwarp_tenGrid):
    """vs-rife's warplayer.warp without its float32 cast (same formula)."""
    tenFlow = torch.cat([tenFlow[:, 0:1] / tenFlow_div[0], tenFlow[:, 1:2] / tenFlow_div[1]], 1)
    g = (backwarp_tenGrid + tenFlow).permute(0, 2, 3, 1)
    return F.grid_sample(input=tenInput, grid=g, mode="bilinear", padding_mode="border", align_corners=True)


def vsrife_run(mod, state, spec, frames, t, scale, dtype):
    """Mirrors vsrife.rife()/init_module for one pair: module.-stripping, padding, encode, crop.
    As init_module, the encoder is a separate module loaded strictly from the `encode.` keys:
    the file's `Head` class, or for 4.7–4.12 the Sequential (vs-rife's __init__.py builds the same
    Sequential as the IFNet file's `self.encode`, which is the one used here)."""
    if any(k.startswith("module.") for k in state):
        state = {k.replace("module.", ""): v for k, v in state.items() if "module." in k}
    net = mod.IFNet(scale, False)
    encode = None
    if spec["enc"]:
        encode = mod.Head() if hasattr(mod, "Head") else copy.deepcopy(net.encode)
        encode.load_state_dict({k.replace("encode.", ""): v for k, v in state.items() if "encode." in k})
        encode = encode.eval().to(dtype)
    net = narrow(mod, net, spec["widths"])
    res = net.load_state_dict(state, strict=False)
    assert not res.missing_keys, res.missing_keys
    assert all(k.startswith(("teacher.", "caltime.")) for k in res.unexpected_keys), res.unexpected_keys
    net = net.eval().to(dtype)
    modulo = spec["modulo"]
    tmp = max(modulo, int(modulo / scale))
    pw, ph = math.ceil(W / tmp) * tmp, math.ceil(H / tmp) * tmp
    padding = (0, pw - W, 0, ph - H)
    div = torch.tensor([(pw - 1.0) / 2.0, (ph - 1.0) / 2.0], dtype=dtype)
    hor = torch.linspace(-1.0, 1.0, pw, dtype=dtype).view(1, 1, 1, pw).expand(-1, -1, ph, -1)
    ver = torch.linspace(-1.0, 1.0, ph, dtype=dtype).view(1, 1, ph, 1).expand(-1, -1, -1, pw)
    grid = torch.cat([hor, ver], 1)
    outs = []
    with torch.no_grad():
        for i in range(NFRAMES - 1):
            img0 = F.pad(frames[i:i + 1].to(dtype), padding)
            img1 = F.pad(frames[i + 1:i + 2].to(dtype), padding)
            timestep = torch.full([1, 1, ph, pw], t, dtype=dtype)
            if spec["enc"]:
                out = net(img0, img1, timestep, div, grid, encode(img0), encode(img1))
            else:
                out = net(img0, img1, timestep, div, grid)
            outs.append(out[:, :, :H, :W])
    return torch.cat(outs)


def crosscheck_vsrife(path, name, net, frames, ref64):
    spec = LAYOUTS[name]
    modules = spec["vsrife"] if isinstance(spec["vsrife"], tuple) else (spec["vsrife"],)
    return max(crosscheck_vsrife_module(path, module, name, frames, ref64) for module in modules)


def crosscheck_vsrife_module(path, module, name, frames, ref64):
    spec = LAYOUTS[name]
    pkg = load_package(path, "vsrife_ref")
    mod = importlib.import_module(f"vsrife_ref.{module}")
    if spec.get("pkl"):
        state = torch.load(os.path.join(OUT, f"{name}.pkl"), weights_only=True)
    else:
        state = load_file(os.path.join(OUT, f"{name}.safetensors"))
    worst32 = worst64 = 0.0
    original_warp = mod.warp
    cases = [(k, float(k[1:]), 1.0) for k in ref64 if re.fullmatch(r"t[0-9.]+", k)]
    for k in ref64:  # scale0.5_t0.5 (v418), the extra scales (v426)
        if m := re.fullmatch(r"scale([0-9.]+)_t([0-9.]+)", k):
            cases.append((k, float(m[2]), float(m[1])))
    for key, t, scale in cases:
        mod.warp = original_warp
        got32 = vsrife_run(mod, state, spec, frames, t, scale, torch.float32)
        mod.warp = warp_keep_dtype
        got64 = vsrife_run(mod, state, spec, frames, t, scale, torch.float64)
        mod.warp = original_warp
        d64 = (got64 - ref64[key]).abs().max().item()
        d32 = (got32.double() - ref64[key]).abs().max().item()
        if scale != 1.0:
            print(f"    {key} (scale {scale:g}, padded {'x'.join(map(str, pad_size(spec, scale)))}): "
                  f"float64 max |diff| {d64:.2e}, float32 {d32:.2e}")
        worst64 = max(worst64, d64)
        worst32 = max(worst32, d32)
    print(f"  {name}: vs-rife {module}: float64 max |diff| {worst64:.2e}, "
          f"float32 (unmodified warp) max |diff| {worst32:.2e} over {len(cases)} cases")
    assert worst64 < 1e-6, worst64
    assert worst32 < 1e-4, worst32
    del pkg
    return worst64


def crosscheck_comfy(path, name, net, frames):
    spec = LAYOUTS[name]
    if "comfy" not in sys.modules:
        comfy = types.ModuleType("comfy")
        mm = types.ModuleType("comfy.model_management")
        mm.get_torch_device = lambda: torch.device("cpu")
        comfy.model_management = mm
        sys.modules["comfy"], sys.modules["comfy.model_management"] = comfy, mm
    arch = importlib.util.spec_from_file_location("comfy_rife_arch", path)
    mod = importlib.util.module_from_spec(arch)
    arch.loader.exec_module(mod)
    cnet = narrow(mod, mod.IFNet(arch_ver=spec["comfy"]), spec["widths"], arch_ver=spec["comfy"])
    cnet.load_state_dict(load_file(os.path.join(OUT, f"{name}.safetensors")))
    cnet = cnet.eval().double()
    mine = net.double()
    fr = frames.double()
    scales = spec["scales"]
    worst = 0.0
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its warp builds the grid in the default dtype
    try:
        with torch.no_grad():
            for scale in (1.0, 0.5) if len(scales) == 4 else (1.0,):
                for t in TIMESTEPS:
                    for i in range(NFRAMES - 1):
                        ts = torch.tensor([t], dtype=torch.float64).view(1, 1, 1, 1)
                        # The node's call: (img0, img1, timestep, scale_list, fast_mode, ensemble)
                        got = cnet(fr[i:i + 1], fr[i + 1:i + 2], ts, [s / scale for s in scales], True, False)
                        exp = interpolate(mine, fr[i:i + 1], fr[i + 1:i + 2], t, scale=scale, multiple=64)
                        if scale == 1.0 and spec["modulo"] == 64:
                            assert torch.equal(exp, interpolate(mine, fr[i:i + 1], fr[i + 1:i + 2], t))
                        worst = max(worst, (got - exp).abs().max().item())
    finally:
        torch.set_default_dtype(old)
        mod.backwarp_tenGrid.clear()
    print(f"  {name}: ComfyUI arch {spec['comfy']} (padding 64): float64 max |diff| {worst:.2e}")
    assert worst < 1e-6, worst
    return worst


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("layouts", nargs="*", help=f"any of {', '.join(LAYOUTS)} (default: all)")
    parser.add_argument("--vsrife", help="folder holding vs-rife's IFNet_HDv3_v4_*.py and warplayer.py")
    parser.add_argument("--comfy", help="ComfyUI-Frame-Interpolation's vfi_models/rife/rife_arch.py")
    args = parser.parse_args()
    for name in args.layouts:
        if name not in LAYOUTS:
            parser.error(f"unknown layout {name!r}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    frames = make_frames()
    for name in args.layouts or list(LAYOUTS):
        print(f"{name} (RIFE {LAYOUTS[name]['release']} layout):")
        net, ref64 = write_layout(name, frames)
        if args.vsrife:
            crosscheck_vsrife(args.vsrife, name, net, frames, ref64)
        if args.comfy and LAYOUTS[name]["comfy"]:
            crosscheck_comfy(args.comfy, name, net, frames)


if __name__ == "__main__":
    main()
