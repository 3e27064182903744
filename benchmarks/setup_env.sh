#!/usr/bin/env bash
# The benchmark environment: odedsl plus the peers it is measured against, kept
# apart from the package's own environment (peers are never odedsl dependencies).
#   bash benchmarks/setup_env.sh        -> .venv-bench/
# numbalsoda builds from source and needs a Fortran compiler (gfortran).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v gfortran >/dev/null; then
  echo "installing gfortran (needed to build numbalsoda)"
  apt-get update -qq && apt-get install -y -qq gfortran
fi
python3 -m venv .venv-bench
. .venv-bench/bin/activate
pip install --quiet --disable-pip-version-check torch==2.13.0 .
pip install --quiet --disable-pip-version-check numbalsoda torchdiffeq torchode jax diffrax
python - <<'PY'
import importlib
for name in ("odedsl", "scipy", "numba", "numbalsoda", "torch", "torchdiffeq", "torchode", "jax", "diffrax"):
    mod = importlib.import_module(name)
    print(f"{name:12s} {getattr(mod, '__version__', '?')}")
PY
