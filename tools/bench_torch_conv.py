#!/usr/bin/env python3
"""Times PyTorch (cuDNN) on the convolution shapes of `kernel_bench --suite conv`.

Run on a CUDA machine next to `kernel_bench`, same dtype and frame count:

    python3 tools/bench_torch_conv.py --dtype bf16 --frames 4

Prints the same table columns (ms, GFLOP/s), so the ratio framestream / cuDNN can be taken
row by row. Activations are channels-last (NDHWC / NHWC), the layout framestream uses.
"""
import argparse
import time

import torch

# (name, cin, cout, h, w, kt, k) — keep in step with SHAPES in kernels/src/bin/kernel_bench.rs.
SHAPES = [
    ("ltx res 1024 @16x24", 1024, 1024, 16, 24, 3, 3),
    ("ltx d2s 1024->4096 @16x24", 1024, 4096, 16, 24, 3, 3),
    ("ltx res 512 @32x48", 512, 512, 32, 48, 3, 3),
    ("ltx d2s 512->2048 @32x48", 512, 2048, 32, 48, 3, 3),
    ("ltx res 256 @64x96", 256, 256, 64, 96, 3, 3),
    ("ltx d2s 256->1024 @64x96", 256, 1024, 64, 96, 3, 3),
    ("ltx res 128 @128x192", 128, 128, 128, 192, 3, 3),
    ("ltx out 128->48 @128x192", 128, 48, 128, 192, 3, 3),
    ("rrdb 64->32 @512x512", 64, 32, 512, 512, 1, 3),
    ("rrdb 96->32 @512x512", 96, 32, 512, 512, 1, 3),
    ("rrdb 128->32 @512x512", 128, 32, 512, 512, 1, 3),
    ("rrdb 160->32 @512x512", 160, 32, 512, 512, 1, 3),
    ("rrdb 192->64 @512x512", 192, 64, 512, 512, 1, 3),
    ("rrdb 64->64 @512x512", 64, 64, 512, 512, 1, 3),
]


def timed(fn):
    fn()
    torch.cuda.synchronize()
    runs, start = 0, time.perf_counter()
    while runs < 3 or (time.perf_counter() - start < 1.0 and runs < 1000):
        fn()
        runs += 1
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000.0 / runs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}, {args.dtype}")
    print()
    print("| layer | ms | GFLOP/s |")
    print("|---|---:|---:|")
    with torch.no_grad():
        for name, cin, cout, h, w, kt, k in SHAPES:
            if kt == 3:
                frames = args.frames
                x = torch.randn(1, cin, frames + 2, h, w, device="cuda", dtype=dtype)
                x = x.to(memory_format=torch.channels_last_3d)
                conv = torch.nn.Conv3d(cin, cout, (3, k, k), padding=(0, k // 2, k // 2))
                conv = conv.to("cuda", dtype).to(memory_format=torch.channels_last_3d)
            else:
                frames = 1
                x = torch.randn(1, cin, h, w, device="cuda", dtype=dtype)
                x = x.to(memory_format=torch.channels_last)
                conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2)
                conv = conv.to("cuda", dtype).to(memory_format=torch.channels_last)
            ms = timed(lambda: conv(x))
            flops = 2.0 * frames * h * w * cin * cout * kt * k * k
            print(f"| {name} x{frames} | {ms:.3f} | {flops / ms / 1e6:.1f} |")


if __name__ == "__main__":
    main()
