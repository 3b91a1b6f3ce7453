#!/usr/bin/env bash
# Idempotent set-up used by both README commands and by .ci/run: a virtual environment
# (.venv, or $SPINEDX_VENV) with the pinned packages of envs/requirements.txt and spinedx
# installed in editable mode. A second call with unchanged pins returns in a second.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=${SPINEDX_VENV:-.venv}
python=${PYTHON:-python3}

"$python" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"spinedx needs Python >= 3.10, found {sys.version.split()[0]} (set PYTHON=...)")
PY

# R with rstan for the meta-analysis stage (Debian packages; CRAN is not needed).
if ! Rscript -e 'quit(status = !requireNamespace("rstan", quietly = TRUE))' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "set-up: installing R and rstan from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      r-base-core r-cran-rstan r-cran-codetools >/dev/null
  else
    echo "set-up: the meta-analysis needs R with rstan (Debian: apt-get install r-base-core r-cran-rstan);" \
         "without it set meta_analysis.enabled: false; its tests are skipped" >&2
  fi
fi

# pROC (Debian r-cran-proc): its aSAH data and published regression values pin the DeLong
# statistics in tests/test_stats_delong.py (the test is skipped without it). Tests only.
if ! Rscript -e 'quit(status = !requireNamespace("pROC", quietly = TRUE))' >/dev/null 2>&1 \
   && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "set-up: installing R's pROC from Debian (test reference data)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends r-cran-proc >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           r-cran-proc >/dev/null; } \
    || echo "set-up: r-cran-proc could not be installed; the pROC reference tests will be skipped" >&2
fi

# Compile the meta-analysis Stan model now (about 45 s, once per machine and rstan version)
# so that the first study run does not; a no-op when it is cached. Without it the stage
# compiles on first use, as before.
if Rscript -e 'quit(status = !requireNamespace("rstan", quietly = TRUE))' >/dev/null 2>&1; then
  echo "set-up: meta-analysis Stan model (R/bivariate.stan)"
  Rscript R/run_meta_analysis.R --compile-only \
    || echo "set-up: compiling the Stan model failed (see above); the first study run will try again" >&2
fi

stamp="$venv/.spinedx-setup"
wanted=$(cat envs/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  echo "set-up: $venv is up to date"
  exit 0
fi

echo "set-up: installing pinned packages into $venv (torch wheels are large; minutes on first run)"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r envs/requirements.txt
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
"$venv/bin/python" -c "import torch, torchvision, timm, snakemake, spinedx" \
  || { echo "set-up: installed packages do not import together; see the error above" >&2; exit 1; }
echo "$wanted" > "$stamp"
echo "set-up: done ($venv)"
