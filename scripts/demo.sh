#!/usr/bin/env bash
# The main job: render the synthetic test video, upscale it ×2 on the device and encode it to an
# H.264 MP4 as it streams, with no model to download. Extra arguments go to `framestream pattern`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/system-packages.sh
mkdir -p out
cargo run --release --locked -- pattern --frames 240 --size 320x180 --scale 2 \
  --overwrite -o out/demo.mp4 "$@"
