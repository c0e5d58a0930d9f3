#!/usr/bin/env bash
# Run HERE (a machine with the package index), before borrowing a GPU machine: downloads into bench/gpu/wheels
# (git-ignored, well under the 64 MiB a device call may carry) the wheels the GPU image lacks, for its
# Python 3.12 on x86_64. The image already has torch, torchvision, timm, transformers, numpy, pandas,
# matplotlib, scikit-image, opencv, scipy, attrs, pytest, hypothesis (see the device tool's KINDS.md).
set -euo pipefail
cd "$(dirname "$0")"
rm -rf wheels && mkdir wheels
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for pkg in mmengine==0.10.7 addict yapf platformdirs termcolor pycocotools "imagecorruptions-imaug==1.1.5" \
           "DALL-E==0.1"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d wheels "$pkg"
done
ls wheels
du -sh wheels
