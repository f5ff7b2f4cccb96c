#!/usr/bin/env bash
# The full test suite: kernels against their CPU references, the stream contract, sinks and
# the CLI, on the default device (lavapipe without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST_PACKAGES=1 source scripts/system-packages.sh
cargo test --workspace --locked "$@"
# A user-written kernel stage, checked against the CPU by the example itself.
cargo run --locked --example custom_stage
# The job service mounted in an application's own router, submitting a job to itself.
cargo run --locked --example embed_service
# The CUDA runtime is only exercised where a GPU is lent; keep it compiling everywhere, and
# the crate without FFmpeg (how the benchmark examples are built for a GPU machine).
cargo check --locked -p framestream --features cuda --all-targets
cargo check --locked -p framestream --no-default-features --features cuda --lib --examples
# The kernel tests as they run on a lent GPU (tools/gpu_bench.sh kernels).
cargo check --locked -p framestream-kernels --no-default-features --features cuda-tests --tests
