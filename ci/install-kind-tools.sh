#!/usr/bin/env bash
# Installs what the kind tier needs on a CI runner: kind, kubectl and a Rust toolchain.
# Versions are pinned here; K8S_VERSION (Makefile) pins the node image and kube-scheduler.
set -euo pipefail
KIND_VERSION="${KIND_VERSION:-v0.29.0}"
KUBECTL_VERSION="${KUBECTL_VERSION:-v1.33.1}"
BIN="${BIN:-/usr/local/bin}"
arch="$(uname -m)"; case "$arch" in x86_64) arch=amd64;; aarch64) arch=arm64;; esac
# GitHub's runners have passwordless sudo but /usr/local/bin is root's: install through sudo there.
SUDO=""
if [ ! -w "$BIN" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
install_tool() { # name url
  local tmp; tmp="$(mktemp)"
  curl -fsSLo "$tmp" "$2"
  $SUDO install -m 0755 "$tmp" "$BIN/$1"
  rm -f "$tmp"
}
# `ci/install-kind-tools.sh kubectl`: kubectl only (the clean-clone CI renders deploy/ with it).
if [ "${1:-}" = "kubectl" ]; then
  command -v kubectl >/dev/null 2>&1 || install_tool kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${arch}/kubectl"
  kubectl version --client
  exit 0
fi
if ! command -v kind >/dev/null 2>&1; then
  install_tool kind "https://kind.sigs.k8s.io/dl/${KIND_VERSION}/kind-linux-${arch}"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  install_tool kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${arch}/kubectl"
fi
if ! command -v cargo >/dev/null 2>&1; then
  curl -fsSL https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
command -v docker >/dev/null 2>&1 || { echo "docker is required (preinstalled on GitHub runners)" >&2; exit 2; }
kind version; kubectl version --client
