#!/usr/bin/env bash
# Create .venv with everything the book, the notebooks and the tests need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/pip install -q "torch>=2.1"
  else
    # A bare `torch` would pull a CUDA build of several GB; this is the CPU build.
    .venv/bin/pip install -q "torch==2.13.0" || .venv/bin/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
.venv/bin/pip install -q -e ".[book,test]"
# The site tests drive Debian's Chromium through selenium; nothing is downloaded at run time.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q chromium chromium-driver || (apt-get update -q && apt-get install -y -q chromium chromium-driver)) >/dev/null
  else
    echo "note: install Debian's chromium and chromium-driver to run the site tests" >&2
  fi
fi
# The venv's own kernel (never the user's global one): jupyter prefers environment paths inside a venv.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
