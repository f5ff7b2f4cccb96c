#!/usr/bin/env bash
# The full test suite: kernels against their CPU references, the stream contract, sinks and
# the CLI, on the default device (lavapipe without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/system-packages.sh
cargo test --workspace --locked "$@"
