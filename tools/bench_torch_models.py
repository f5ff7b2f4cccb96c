#!/usr/bin/env python3
"""Times the PyTorch references of framestream's model benchmarks on the same shapes.

    python3 tools/bench_torch_models.py ltx --latent 24x16 --frames 5,17 --dtype bf16
    python3 tools/bench_torch_models.py upscale --size 1280x720 --frames 4 --dtype f16
    python3 tools/bench_torch_models.py wan --version 2.1 --latent 60x34 --frames 5,17 --dtype bf16
    python3 tools/bench_torch_models.py rife --layout 4.18 --size 1280x720 --frames 5 --dtype f16

`ltx`: the decoder of the layout the `ltx_decode` example builds (`--layout`, random weights):
`0.9.5` is diffusers' `AutoencoderKLLTXVideo` (conv_in 128→1024, four levels of `--layers`
resblocks at 1024/512/256/128 channels, three residual depth-to-space upsamplers, timestep
conditioning, decode timestep 0.05); `2.0` and `2.3` are `AutoencoderKLLTX2Video` with the
released LTX-2.0 and LTX-2.3 decoder configs (no conditioning; 2.3 with its temporal and
spatial upsamplers). It decodes the whole latent at once (diffusers' default) and, with
`--tiled`, through diffusers' own temporal/spatial tiling. `upscale`: SRVGGNetCompact K16 and
K32 and RRDBNet ×4 (`--rrdb-blocks`) loaded through spandrel's `ModelLoader` from random state
dicts in the Real-ESRGAN layout, on whole frames, chunks of `--frames`. `wan`: diffusers'
`AutoencoderKLWan` with the released Wan 2.1 or Wan 2.2 decoder (the `wan_decode` example's
`WanConfig::released`), random weights, decoding the VAE-space latent frame by frame with its
feature cache (diffusers' `decode`). `rife`: RIFE ×2 frame interpolation with the IFNet of
tools/make_rife_fixtures.py (the released IFNet_HDv3 graph of `--layout` 4.6, 4.18 or 4.26) at the
released block widths (192, 128, 96, 64; 4.26: 192, 128, 96, 64, 32; the Head encoder as
released), random weights, `--frames` random frames already on the device, each consecutive pair
interpolated at t = 0.5 with vs-rife's padding and `--scale`; as the released IFNet.forward (and
vs-rife) do it, both frames of a pair are encoded for that pair (interior frames twice), unless
`--encode-once` (every frame once, as framestream does); the warp runs in f32 (vs-rife's warp
casts), on a cached grid.

Prints frames/s and the peak memory PyTorch allocated, beside which the `ltx_decode`,
`wan_decode`, `upscale` and `interpolate` examples' tables compare. Runs on CPU too (`--device cpu`, small sizes) to check
the script itself.
"""
import argparse
import os
import sys
import time

import torch

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def size(text):
    w, h = text.lower().split("x")
    return int(w), int(h)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mib(device):
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def randomize(module, seed):
    """Uniform ±1/√fan_in weights (as the Rust examples draw them), zero biases."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                bound = p[0].numel() ** -0.5
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
            elif name.endswith("timestep_scale_multiplier"):
                p.fill_(1000.0)
            else:
                p.zero_()


def ltx_vae(args):
    """The diffusers model of `--layout`, and the decode timestep it takes (None without one)."""
    layers = args.layers
    if args.layout == "0.9.5":
        from diffusers import AutoencoderKLLTXVideo

        return AutoencoderKLLTXVideo(
            latent_channels=128,
            decoder_block_out_channels=(256, 512, 1024),
            decoder_layers_per_block=(layers,) * 4,
            decoder_spatio_temporal_scaling=(True, True, True),
            decoder_inject_noise=(False,) * 4,
            upsample_residual=(True, True, True),
            upsample_factor=(2, 2, 2),
            timestep_conditioning=True,
        ), 0.05
    from diffusers import AutoencoderKLLTX2Video

    if args.layout == "2.0":
        decoder = dict(
            decoder_block_out_channels=(256, 512, 1024),
            decoder_layers_per_block=(layers,) * 4,
            upsample_type=("spatiotemporal",) * 3,
            upsample_residual=(True,) * 3,
            upsample_factor=(2, 2, 2),
            decoder_spatial_padding_mode="reflect",
        )
    else:
        decoder = dict(
            decoder_block_out_channels=(256, 512, 512, 1024),
            decoder_layers_per_block=(4, 6, 4, 2, 2),
            upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
            upsample_residual=(False,) * 4,
            upsample_factor=(2, 2, 1, 2),
            decoder_spatial_padding_mode="zeros",
        )
    n = len(decoder["decoder_block_out_channels"])
    return AutoencoderKLLTX2Video(
        latent_channels=128,
        decoder_spatio_temporal_scaling=(True,) * n,
        decoder_inject_noise=(False,) * (n + 1),
        decoder_causal=False,
        timestep_conditioning=False,
        **decoder,
    ), None


def ltx(args, device, dtype):
    from diffusers.utils import logging

    logging.set_verbosity_error()

    vae, timestep = ltx_vae(args)
    vae = vae.eval()
    randomize(vae.decoder, 11)
    decoder_params = sum(p.numel() for p in vae.decoder.parameters())
    vae = vae.to(device=device, dtype=dtype)
    if args.tiled:
        vae.enable_tiling()
    w, h = size(args.latent)
    print(f"diffusers {type(vae).__name__} decoder, layout {args.layout} ({decoder_params} parameters), {args.dtype}, "
          f"latent {w}x{h} -> {32 * w}x{32 * h}, {'tiled' if args.tiled else 'whole latent'}, "
          f"torch {torch.__version__} on {device_name(device)}")
    print()
    print("| latent frames | frames | time (s) | frames/s | peak allocated (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    gen = torch.Generator().manual_seed(7)
    temb = None if timestep is None else torch.tensor([timestep], device=device, dtype=dtype)
    with torch.no_grad():
        warm = torch.rand(1, 128, 1, h, w, generator=gen).to(device=device, dtype=dtype)
        vae.decode(warm, temb=temb)
        for t in [int(f) for f in args.frames.split(",")]:
            z = (torch.rand(1, 128, t, h, w, generator=gen) * 2 - 1).to(device=device, dtype=dtype)
            reset_peak(device)
            sync(device)
            start = time.perf_counter()
            frames = vae.decode(z, temb=temb).sample
            sync(device)
            seconds = time.perf_counter() - start
            n = frames.shape[2]
            print(f"| {t} | {n} | {seconds:.2f} | {n / seconds:.2f} | {peak_mib(device):.0f} |")
            del frames


def real_esrgan_compact(convs, seed):
    gen = torch.Generator().manual_seed(seed)
    nf, sd = 64, {}

    def conv(name, cout, cin):
        bound = (cin * 9) ** -0.5
        sd[f"{name}.weight"] = (torch.rand(cout, cin, 3, 3, generator=gen) * 2 - 1) * bound
        sd[f"{name}.bias"] = torch.zeros(cout)

    conv("body.0", nf, 3)
    for k in range(convs + 1):
        if k > 0:
            conv(f"body.{2 * k}", nf, nf)
        sd[f"body.{2 * k + 1}.weight"] = torch.full((nf,), 0.25)
    conv(f"body.{2 * convs + 2}", 48, nf)
    return sd


def real_esrgan_rrdb(blocks, seed):
    gen = torch.Generator().manual_seed(seed)
    nf, gc, sd = 64, 32, {}

    def conv(name, cout, cin):
        bound = (cin * 9) ** -0.5
        sd[f"{name}.weight"] = (torch.rand(cout, cin, 3, 3, generator=gen) * 2 - 1) * bound
        sd[f"{name}.bias"] = torch.zeros(cout)

    conv("conv_first", nf, 3)
    for i in range(blocks):
        for r in range(1, 4):
            for k in range(1, 6):
                conv(f"body.{i}.rdb{r}.conv{k}", nf if k == 5 else gc, nf + (k - 1) * gc)
    for name in ["conv_body", "conv_up1", "conv_up2", "conv_hr"]:
        conv(name, nf, nf)
    conv("conv_last", 3, nf)
    return sd


def upscale(args, device, dtype):
    from spandrel import ModelLoader

    w, h = size(args.size)
    models = [("SRVGGNetCompact K16 (animevideov3)", real_esrgan_compact(16, 1)),
              ("SRVGGNetCompact K32 (general-x4v3)", real_esrgan_compact(32, 2))]
    if args.rrdb_blocks > 0:
        models.append((f"RRDBNet x4 ({args.rrdb_blocks} blocks)", real_esrgan_rrdb(args.rrdb_blocks, 3)))
    print(f"spandrel, {w}x{h} -> x4, chunks of {args.frames} frames, whole frames, {args.dtype}, "
          f"torch {torch.__version__} on {device_name(device)}")
    print()
    print("| model | parameters | frames/s | s/frame | peak allocated (MiB) |")
    print("|---|---:|---:|---:|---:|")
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(args.frames, 3, h, w, generator=gen).to(device=device, dtype=dtype)
    for name, sd in models:
        model = ModelLoader().load_from_state_dict(sd).model.eval().to(device=device, dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            model(x[:1])
            reset_peak(device)
            sync(device)
            runs, start = 0, time.perf_counter()
            while runs < 2 or (time.perf_counter() - start < 2.0 and runs < 100):
                model(x).clamp_(0, 1)
                runs += 1
            sync(device)
            per_frame = (time.perf_counter() - start) / (runs * args.frames)
        print(f"| {name} | {params} | {1 / per_frame:.2f} | {per_frame:.4f} | {peak_mib(device):.0f} |")
        del model


def wan(args, device, dtype):
    from diffusers import AutoencoderKLWan
    from diffusers.utils import logging

    logging.set_verbosity_error()
    if args.version == "2.1":
        vae, z, factor = AutoencoderKLWan(base_dim=96, z_dim=16), 16, 8
    else:
        vae = AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12,
                               out_channels=12, patch_size=2, scale_factor_spatial=16)
        z, factor = 48, 16
    vae = vae.eval()
    randomize(vae.decoder, 11)
    randomize(vae.post_quant_conv, 12)
    with torch.no_grad():
        for name, p in vae.decoder.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    decoder_params = sum(p.numel() for p in vae.decoder.parameters()) + sum(p.numel() for p in vae.post_quant_conv.parameters())
    vae = vae.to(device=device, dtype=dtype)
    w, h = size(args.latent)
    print(f"diffusers AutoencoderKLWan decoder, Wan {args.version} ({decoder_params} parameters), {args.dtype}, "
          f"latent {w}x{h} -> {factor * w}x{factor * h}, frame by frame, torch {torch.__version__} on {device_name(device)}")
    print()
    print("| latent frames | frames | time (s) | frames/s | peak allocated (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        vae.decode(torch.rand(1, z, 1, h, w, generator=gen).to(device=device, dtype=dtype))
        for t in [int(f) for f in args.frames.split(",")]:
            latent = (torch.rand(1, z, t, h, w, generator=gen) * 2 - 1).to(device=device, dtype=dtype)
            reset_peak(device)
            sync(device)
            start = time.perf_counter()
            frames = vae.decode(latent).sample
            sync(device)
            seconds = time.perf_counter() - start
            n = frames.shape[2]
            print(f"| {t} | {n} | {seconds:.2f} | {n / seconds:.2f} | {peak_mib(device):.0f} |")
            del frames


RIFE_LAYOUTS = {"4.6": "v46", "4.18": "v418", "4.26": "v426"}
RIFE_WIDTHS = {"4.6": [192, 128, 96, 64], "4.18": [192, 128, 96, 64], "4.26": [192, 128, 96, 64, 32]}


def rife_module():
    """tools/make_rife_fixtures.py as a module, with a warp that runs on any device."""
    try:
        import safetensors.torch  # noqa: F401  (the fixture script imports it; nothing here uses it)
    except ImportError:
        import types

        st = types.ModuleType("safetensors")
        st.torch = types.ModuleType("safetensors.torch")
        st.torch.load_file = st.torch.save_file = None
        sys.modules["safetensors"], sys.modules["safetensors.torch"] = st, st.torch
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import make_rife_fixtures as fx

    grids = {}

    def warp(img, flow):
        """The fixture's warp (grid_sample bilinear, border, align_corners=True on linspace + flow /
        ((size - 1) / 2)), with the base grid cached per device and size and the sampling in f32."""
        _, _, h, w = img.shape
        key = (flow.device, h, w)
        if key not in grids:
            gx = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, w).expand(1, h, w)
            gy = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, h, 1).expand(1, h, w)
            grids[key] = torch.stack([gx, gy], dim=-1)
        flow = flow.float()
        grid = grids[key] + torch.stack([flow[:, 0] / ((w - 1.0) / 2.0), flow[:, 1] / ((h - 1.0) / 2.0)], dim=-1)
        out = torch.nn.functional.grid_sample(img.float(), grid, mode="bilinear", padding_mode="border",
                                              align_corners=True)
        return out.to(img.dtype)

    fx.warp = warp
    return fx


class EncodedFeatures(torch.nn.Module):
    """Stands in for IFNet.encode: hands back features computed beforehand, in call order."""

    def __init__(self):
        super().__init__()
        self.queue = []

    def forward(self, x):
        return self.queue.pop(0)


def rife(args, device, dtype):
    if args.frames < 2:
        raise SystemExit("rife: --frames must be at least 2")
    fx = rife_module()
    spec = dict(fx.LAYOUTS[RIFE_LAYOUTS[args.layout]], widths=RIFE_WIDTHS[args.layout])
    net = fx.IFNet(spec)
    fx.init_weights(net, spec["seed"])
    params = sum(p.numel() for p in net.parameters())
    net = net.eval().to(device=device, dtype=dtype)
    w, h = size(args.size)
    ph, pw = fx.pad_size(spec, args.scale, h, w)
    once = args.encode_once and spec["enc"] is not None
    encoder = "none" if spec["enc"] is None else (
        f"Head 3->{spec['enc'][0]}->{spec['enc'][0]}->{spec['enc'][0]}->{spec['enc'][1]}, "
        + ("every frame encoded once" if once else "both frames encoded per pair"))
    print(f"RIFE {args.layout} IFNet (tools/make_rife_fixtures.py, widths {','.join(map(str, spec['widths']))}, "
          f"encoder {encoder}; {params} parameters), {args.dtype}, {w}x{h} (padded {pw}x{ph}) x2, "
          f"{args.frames} input frames, scale {args.scale:g}, t = 0.5, torch {torch.__version__} on {device_name(device)}")
    print()
    print("| layout | size | precision | interpolated frames/s | s/frame | peak allocated (MiB) |")
    print("|---|---|---|---:|---:|---:|")
    gen = torch.Generator().manual_seed(9)
    frames = torch.rand(args.frames, 3, h, w, generator=gen).to(device=device, dtype=dtype)
    pad = (0, pw - w, 0, ph - h)
    if once:
        head, net.encode = net.encode, EncodedFeatures()

    def run_pass(pairs):
        """Interpolates frames 0..pairs pairwise; returns the last interpolated frame."""
        if once:
            feats = [head(torch.nn.functional.pad(frames[i:i + 1], pad)) for i in range(pairs + 1)]
            net.encode.queue = [f for i in range(pairs) for f in (feats[i], feats[i + 1])]
        for i in range(pairs):
            out = fx.interpolate(net, frames[i:i + 1], frames[i + 1:i + 2], 0.5, scale=args.scale)
        return out

    with torch.inference_mode():
        out = run_pass(1)  # the warm-up pair
        assert out.shape == (1, 3, h, w) and torch.isfinite(out).all()
        reset_peak(device)
        sync(device)
        # (frames - 1) interpolations a pass; passes repeat until a second has gone by.
        passes, start = 0, time.perf_counter()
        while passes < 1 or (time.perf_counter() - start < 1.0 and passes < 50):
            run_pass(args.frames - 1)
            passes += 1
        sync(device)
        per_frame = (time.perf_counter() - start) / (passes * (args.frames - 1))
    shown = f"{w}x{h}" + ("" if args.scale == 1 else f" (scale {args.scale:g})")
    print(f"| {args.layout} (PyTorch) | {shown} | {args.dtype} | {1 / per_frame:.3f} | {per_frame:.4f} | "
          f"{peak_mib(device):.0f} |")


def device_name(device):
    return torch.cuda.get_device_name() if device.type == "cuda" else "CPU"


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="model", required=True)
    p = sub.add_parser("ltx")
    p.add_argument("--latent", default="24x16")
    p.add_argument("--frames", default="5,17")
    p.add_argument("--layout", default="0.9.5", choices=["0.9.5", "2.0", "2.3"])
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--tiled", action="store_true")
    p = sub.add_parser("wan")
    p.add_argument("--version", default="2.1", choices=["2.1", "2.2"])
    p.add_argument("--latent", default="60x34")
    p.add_argument("--frames", default="5,17")
    p = sub.add_parser("upscale")
    p.add_argument("--size", default="1280x720")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--rrdb-blocks", type=int, default=23)
    p = sub.add_parser("rife")
    p.add_argument("--layout", default="4.18", choices=sorted(RIFE_LAYOUTS))
    p.add_argument("--size", default="1280x720")
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--scale", type=float, default=1.0, choices=[1.0, 0.5])
    p.add_argument("--encode-once", action="store_true")
    for p in sub.choices.values():
        p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
        p.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    # f32 means f32, as on framestream's side: no TF32 tensor cores.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    {"ltx": ltx, "upscale": upscale, "wan": wan, "rife": rife}[args.model](args, device, DTYPES[args.dtype])


if __name__ == "__main__":
    main()
