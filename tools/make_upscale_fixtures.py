#!/usr/bin/env python3
"""Builds the ESRGAN-family test fixtures under tests/fixtures/upscale/.

Tiny random-weight RRDBNet and SRVGGNetCompact models are built with spandrel (the reference
implementation ComfyUI uses), saved in the layouts and file formats met in the wild, loaded
back through spandrel's own loader, and run on a small random image. Outputs are stored
untiled and tiled the way ComfyUI's `tiled_scale` tiles (tile and overlap in the file name).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch spandrel safetensors
    /tmp/venv/bin/python tools/make_upscale_fixtures.py

Every tensor in the output files is channel-last f32 `[n, h, w, c]`.
"""
import os
from collections import OrderedDict

import torch
from safetensors.torch import save_file
from spandrel import ModelLoader
from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact
from spandrel.architectures.ESRGAN.__arch.RRDB import RRDBNet

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "upscale")


def randomize(model, seed):
    """Random weights with enough spread that the outputs use the whole [0, 1] range."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            if p.dim() == 1 and "body" in name and p.shape[0] == getattr(model, "num_feat", -1):
                p.copy_(torch.rand(p.shape, generator=gen) * 0.3)  # PReLU slopes
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / fan_in) ** 0.5)
    return model.eval()


def last_conv(model):
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return convs[-1]


def calibrate(model, image, shuffle=1):
    """Rescales the last convolution so outputs mostly stay inside [0, 1] (random weights
    saturate otherwise, and clamped values test little)."""
    conv = last_conv(model)
    x = torch.nn.functional.pixel_unshuffle(image, shuffle) if shuffle > 1 else image
    with torch.no_grad():
        y = model.model(x) if hasattr(model, "model") else model(x)
        if isinstance(model, SRVGGNetCompact):
            up = torch.nn.functional.interpolate(image, scale_factor=model.upscale, mode="nearest")
            a, b = 0.1 / (y - up).std().item(), 0.0
        else:
            lo, hi = y.min().item(), y.max().item()
            a = 0.9 / (hi - lo)
            b = 0.05 - a * lo
        conv.weight.mul_(a)
        conv.bias.mul_(a).add_(b)
    return model


def to_bs_layout(state):
    """spandrel's (old ESRGAN) names → BasicSR / Real-ESRGAN names."""
    out = OrderedDict()
    blocks = {int(k.split(".")[3]) for k in state if k.startswith("model.1.sub.") and ".RDB" in k}
    nb = max(blocks) + 1
    ups = sorted({int(k.split(".")[1]) for k in state if k.startswith("model.")} - {0, 1})
    hr, last = ups[-2], ups[-1]
    for k, v in state.items():
        parts = k.split(".")
        if parts[1] == "0":
            out[f"conv_first.{parts[-1]}"] = v
        elif parts[1] == "1" and parts[3] == str(nb):
            out[f"conv_body.{parts[-1]}"] = v
        elif parts[1] == "1":
            # model.1.sub.{i}.RDB{r}.conv{k}.0.{w|b}
            i, rdb, conv = parts[3], parts[4][3:], parts[5]
            out[f"body.{i}.rdb{rdb}.{conv}.{parts[-1]}"] = v
        elif int(parts[1]) == hr:
            out[f"conv_hr.{parts[-1]}"] = v
        elif int(parts[1]) == last:
            out[f"conv_last.{parts[-1]}"] = v
        else:
            out[f"conv_up{int(parts[1]) // 3}.{parts[-1]}"] = v
    return out


def channel_last(t):
    return t.permute(0, 2, 3, 1).contiguous().float()


def comfy_tiled(model, x, scale, tile, overlap):
    """ComfyUI's tiled_scale as its documentation describes it (batch 1, one pass)."""
    _, c, h, w = x.shape
    if h <= tile and w <= tile:
        return model(x).clamp(0, 1)
    out = torch.zeros(1, c, round(h * scale), round(w * scale))
    div = torch.zeros_like(out)
    feather = round(overlap * scale)
    for y in range(0, h - overlap, tile - overlap):
        for x0 in range(0, w - overlap, tile - overlap):
            piece = x[:, :, y : y + tile, x0 : x0 + tile]
            result = model(piece).clamp(0, 1)
            th, tw = result.shape[2], result.shape[3]
            mask = torch.ones_like(result)
            for axis, length in ((2, th), (3, tw)):
                if feather >= length:
                    continue
                for t in range(feather):
                    ramp = (t + 1) / feather
                    idx = [slice(None)] * 4
                    idx[axis] = t
                    mask[tuple(idx)] *= ramp
                    idx[axis] = length - 1 - t
                    mask[tuple(idx)] *= ramp
            oy, ox = round(y * scale), round(x0 * scale)
            out[:, :, oy : oy + th, ox : ox + tw] += result * mask
            div[:, :, oy : oy + th, ox : ox + tw] += mask
    return (out / div).clamp(0, 1)


def write_references(name, path, image, tiles):
    descriptor = ModelLoader().load_from_file(path)
    model = descriptor.model.float().eval()
    scale = descriptor.scale

    def run(x):
        with torch.no_grad():
            return descriptor(x).float()

    tensors = {"input": channel_last(image), "output": channel_last(run(image).clamp(0, 1))}
    for tile, overlap in tiles:
        with torch.no_grad():
            tensors[f"tiled_{tile}_{overlap}"] = channel_last(comfy_tiled(run, image, scale, tile, overlap))
    save_file(tensors, os.path.join(OUT, f"{name}.reference.safetensors"),
              metadata={"architecture": descriptor.architecture.id, "scale": str(scale),
                        "parameters": str(sum(p.numel() for p in model.parameters()))})
    print(f"{name}: {descriptor.architecture.id} x{scale}, {os.path.basename(path)}")


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 18, 22, generator=gen)
    tiles = [(12, 4), (10, 2)]

    # RRDBNet ×4, old ESRGAN names ("model.N"), as .pth and as .safetensors.
    rrdb = calibrate(randomize(RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4), 10), image)
    state = rrdb.state_dict()
    torch.save(state, os.path.join(OUT, "rrdb_x4_old.pth"))
    save_file(dict(state), os.path.join(OUT, "rrdb_x4_old.safetensors"))
    write_references("rrdb_x4_old", os.path.join(OUT, "rrdb_x4_old.pth"), image, tiles)

    # RRDBNet ×2 with pixel-unshuffle input (Real-ESRGAN x2plus), BasicSR names, nested in
    # params_ema like BasicSR's checkpoints.
    rrdb = randomize(RRDBNet(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2), 11)
    rrdb = calibrate(rrdb, image[:, :, :18, :22], shuffle=2)
    bs = to_bs_layout(rrdb.state_dict())
    torch.save({"params_ema": bs, "params": bs}, os.path.join(OUT, "rrdb_x2plus_bs.pth"))
    write_references("rrdb_x2plus_bs", os.path.join(OUT, "rrdb_x2plus_bs.pth"), image, tiles)

    # ESRGAN+ ("plus", with conv1x1), ×2, two blocks, old names, f16 safetensors.
    rrdb = calibrate(randomize(RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=2, scale=2, plus=True), 12), image)
    half = OrderedDict((k, v.half()) for k, v in rrdb.state_dict().items())
    save_file(dict(half), os.path.join(OUT, "rrdb_x2_plus_f16.safetensors"))
    write_references("rrdb_x2_plus_f16", os.path.join(OUT, "rrdb_x2_plus_f16.safetensors"), image, tiles)

    # SRVGGNetCompact ×4 (realesr-animevideov3's shape, smaller), .pth with params and a
    # DataParallel "module." prefix, and .safetensors.
    compact = calibrate(randomize(SRVGGNetCompact(num_feat=8, num_conv=4, upscale=4), 13), image)
    state = compact.state_dict()
    wrapped = OrderedDict((f"module.{k}", v) for k, v in state.items())
    torch.save({"params": wrapped}, os.path.join(OUT, "compact_x4.pth"))
    halves = OrderedDict((k, v.half()) for k, v in state.items())
    torch.save(halves, os.path.join(OUT, "compact_x4_f16.pth"))
    save_file(dict(state), os.path.join(OUT, "compact_x4.safetensors"))
    write_references("compact_x4", os.path.join(OUT, "compact_x4.pth"), image, tiles)
    write_references("compact_x4_f16", os.path.join(OUT, "compact_x4_f16.pth"), image, tiles)

    # SRVGGNetCompact ×2.
    compact = calibrate(randomize(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2), 14), image)
    save_file(dict(compact.state_dict()), os.path.join(OUT, "compact_x2.safetensors"))
    write_references("compact_x2", os.path.join(OUT, "compact_x2.safetensors"), image, tiles)


if __name__ == "__main__":
    main()
