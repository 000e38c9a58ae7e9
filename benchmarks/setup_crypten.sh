#!/usr/bin/env bash
# Installs the CrypTen baseline of `pi bench relu|model` into the project's venv.
#
# CrypTen 0.4.1 (the last PyPI release) does not install as published on current PyTorch:
# its metadata requires the withdrawn `sklearn` package (and torchvision, pandas, scipy,
# tensorboard, future, which its MPC engine never imports). So: crypten with --no-deps, then
# only what `import crypten` really imports: onnx (crypten.nn.onnx_converter, with protobuf
# and ml_dtypes) and omegaconf (crypten.config). Nothing here becomes a runtime dependency of
# the project (pyproject.toml does not list CrypTen).
#
# `import crypten` also needs torch.onnx._internal.registration, which moved inside torch.onnx;
# the benchmark process alone installs an import stub for it (pi/bench/crypten_baseline.py,
# a sys.modules entry), nothing is written into site-packages.
#
# Usage: benchmarks/setup_crypten.sh [VENV]   (default: .venv of this checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "no Python at $PY: run 'make setup' first (or pass the venv directory)" >&2
  exit 1
fi
"$PY" -m pip install --quiet --no-deps "crypten==0.4.1"
"$PY" -m pip install --quiet "onnx>=1.14" "omegaconf>=2.1"
"$PY" - <<'PY'
from pi.bench.crypten_baseline import crypten_available
ok, why = crypten_available()
print("crypten importable:", ok, "" if ok else why)
raise SystemExit(0 if ok else 1)
PY
