#!/usr/bin/env bash
# Creates .venv-bench with nibabel + numpy for the side-by-side NIfTI benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-bench
.venv-bench/bin/pip install -q nibabel numpy
.venv-bench/bin/python -c 'import nibabel, numpy; print("nibabel", nibabel.__version__, "numpy", numpy.__version__)'
