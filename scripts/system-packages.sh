#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages framestream needs, when they are missing: as root with
# apt-get, otherwise through sudo; without either it prints the exact command and fails.
# Sourced by demo.sh and test.sh; runnable on its own.
set -euo pipefail

PACKAGES=(
  mesa-vulkan-drivers libvulkan1          # Vulkan, and lavapipe where there is no GPU
  clang libclang-dev pkg-config           # bindgen for the FFmpeg bindings
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  ffmpeg                                  # ffmpeg and ffprobe, used by the tests
)
# The test suite also drives the job service's web page in a headless browser.
if [ "${WITH_TEST_PACKAGES:-0}" = 1 ]; then
  PACKAGES+=(chromium)
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "note: not a Debian/Ubuntu system; make sure the equivalents of these are installed:" >&2
  echo "  ${PACKAGES[*]}" >&2
else
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing missing system packages: ${missing[*]}" >&2
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    elif command -v sudo >/dev/null 2>&1; then
      sudo apt-get update -qq
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
      echo "error: missing system packages and no root or sudo to install them; run:" >&2
      echo "  apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
fi

# The Vulkan loader probes Wayland and complains without a runtime directory.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  export XDG_RUNTIME_DIR
fi
