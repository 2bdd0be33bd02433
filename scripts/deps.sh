#!/usr/bin/env bash
# Install the Debian packages seifer needs, when missing (needs root for apt-get).
set -euo pipefail
pkgs=(cmake make gcc pkg-config libxnnpack-dev libpthreadpool-dev libprotobuf-c-dev protobuf-c-compiler
      libonnx-dev libonnx-testdata libcmocka-dev libcjson-dev liblz4-dev libzfp-dev libssl-dev
      libmicrohttpd-dev libcurl4-openssl-dev iproute2 iperf3 curl jq)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "seifer: installing missing packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "seifer: need root to install packages (run as root or install them first)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  }
fi
