#!/usr/bin/env bash
# The main job of `make demo`: runs moeserve on a generated tiny model.
set -euo pipefail
build_dir="${1:-build}"
"${build_dir}/bin/moeserve-worker" --version
"${build_dir}/bin/moeserve-operator" --version
