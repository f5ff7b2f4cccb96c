#!/usr/bin/env bash
# The GPU comparisons, run on a CUDA machine that has PyTorch but neither Rust nor FFmpeg.
#
# Here (a machine with the Rust toolchain), once:
#   cargo build --release -p framestream-kernels --no-default-features --features cuda --bin kernel_bench
#   cargo build --release --no-default-features --features cuda --example ltx_decode --example wan_decode --example upscale \
#     --example interpolate
#   mkdir -p .gpu && cp target/release/kernel_bench target/release/examples/{ltx_decode,wan_decode,upscale,interpolate} .gpu/
#   # every kernel test, on CUDA:
#   cp "$(cargo test --release -p framestream-kernels --no-default-features --features cuda-tests --no-run 2>&1 \
#     | grep -o 'target/release/deps/framestream_kernels-[0-9a-f]*')" .gpu/kernel_tests
#   strip .gpu/*   # what a device run carries is limited to 64 MiB with the working tree
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers importlib_metadata spandrel
#   (.gpu/ and .whl/ are git-ignored; a lent-device run carries them)
# There, from the repository root, with .gpu/ and .whl/ beside it:
#   bash tools/gpu_bench.sh kernels|conv|ltx|ltx23|wan21|wan22|upscale|rife [OUT_DIR]
# Each part prints framestream's table, then PyTorch's on the same shapes, and is meant to fit one
# ten-minute device command (not yet run: no GPU has been lent to this project so far).
set -euo pipefail
part=${1:?kernels, conv, ltx, ltx23, wan21, wan22, upscale or rife}
out=${2:-${OUT:-/tmp}}
mkdir -p "$out"
cd "$(dirname "$0")/.."

# diffusers and spandrel (the `ltx`, `wan` and `upscale` parts) are not on the machine: carried wheels.
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# CubeCL compiles kernels with NVRTC at run time: give it the toolkit's or PyTorch's copy under
# a name it looks for.
nvrtc=$(find /usr/local/cuda*/ "$(python3 -c 'import site; print(site.getsitepackages()[0])')/nvidia" \
  -name 'libnvrtc.so*' 2>/dev/null | grep -v builtins | head -1 || true)
if [[ -n "$nvrtc" ]]; then
  mkdir -p /tmp/nvrtc && ln -sf "$nvrtc" /tmp/nvrtc/libnvrtc.so
  export LD_LIBRARY_PATH=/tmp/nvrtc:$(dirname "$nvrtc")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export FRAMESTREAM_DEVICE=cuda
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

case $part in
  kernels)
    # Every kernel against its CPU reference, on the GPU (f16/bf16 cases where it has them).
    .gpu/kernel_tests --test-threads 1 2>&1 | tee "$out/kernel-tests.txt" ;;
  conv)
    for dtype in f32 f16 bf16; do
      .gpu/kernel_bench --suite conv --dtype "$dtype" --strategy tiled | tee "$out/conv-$dtype.md"
      python3 tools/bench_torch_conv.py --dtype "$dtype" | tee "$out/conv-torch-$dtype.md"
    done ;;
  ltx|ltx23)
    # The 0.9.5+ layout (timestep-conditioned) or LTX-2.3's (temporal and spatial upsamplers).
    layout=$([[ $part == ltx ]] && echo 0.9.5 || echo 2.3)
    for precision in f32 bf16; do
      .gpu/ltx_decode --layout "$layout" --latent 24x16 --frames 5,17 --piece-kib 16384 \
        --precision "$precision" | tee "$out/ltx-$layout-$precision.md"
      python3 tools/bench_torch_models.py ltx --layout "$layout" --latent 24x16 --frames 5,17 \
        --dtype "$precision" | tee "$out/ltx-$layout-torch-$precision.md"
    done
    python3 tools/bench_torch_models.py ltx --layout "$layout" --latent 24x16 --frames 5,17 --dtype bf16 --tiled \
      | tee "$out/ltx-$layout-torch-bf16-tiled.md" ;;
  wan21|wan22)
    # The released decoder at 480p (2.1: latent 104x60 -> 832x480; 2.2: 52x30 -> 832x480).
    version=$([[ $part == wan21 ]] && echo 2.1 || echo 2.2)
    latent=$([[ $part == wan21 ]] && echo 104x60 || echo 52x30)
    for precision in f32 bf16; do
      .gpu/wan_decode --version "$version" --latent "$latent" --frames 5,17 --piece-kib 65536 \
        --precision "$precision" --tokens 3600,14400 | tee "$out/wan-$version-$precision.md"
      python3 tools/bench_torch_models.py wan --version "$version" --latent "$latent" --frames 5,17 \
        --dtype "$precision" | tee "$out/wan-$version-torch-$precision.md"
    done ;;
  upscale)
    .gpu/upscale --size 1280x720 --frames 4 --rrdb-blocks 23 | tee "$out/upscale.md"
    python3 tools/bench_torch_models.py upscale --size 1280x720 --frames 4 --dtype f32 | tee "$out/upscale-torch-f32.md"
    python3 tools/bench_torch_models.py upscale --size 1280x720 --frames 4 --dtype f16 | tee "$out/upscale-torch-f16.md" ;;
  rife)
    # RIFE x2 at released widths, random weights: 720p (milliseconds a frame on a large GPU; each
    # process's start, kernel compilation and cuDNN autotuning dominate), then one 4K run at
    # pyramid scale 0.5 (as RIFE is run at 4K), f16 only.
    for layout in 4.18 4.26; do
      for precision in f32 f16; do
        .gpu/interpolate --layout "$layout" --size 1280x720 --frames 5 --precision "$precision" \
          | tee "$out/rife-$layout-$precision.md"
        python3 tools/bench_torch_models.py rife --layout "$layout" --size 1280x720 --frames 5 --dtype "$precision" \
          | tee "$out/rife-$layout-torch-$precision.md"
      done
    done
    .gpu/interpolate --layout 4.26 --size 3840x2160 --frames 5 --scale 0.5 --precision f16 \
      | tee "$out/rife-4.26-f16-4k.md"
    python3 tools/bench_torch_models.py rife --layout 4.26 --size 3840x2160 --frames 5 --scale 0.5 --dtype f16 \
      | tee "$out/rife-4.26-torch-f16-4k.md" ;;
  *) echo "unknown part $part (kernels, conv, ltx, ltx23, wan21, wan22, upscale or rife)" >&2; exit 2 ;;
esac
