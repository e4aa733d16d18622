#!/usr/bin/env bash
# Installs the peer benchmarks' stacks into ${PATCHREC_PEERS:-~/.cache/patchrec/peers}/venv,
# from PyPI only. Idempotent: what already imports is left alone. Each peer that cannot be
# installed is reported as "skipping X: why"; exits 0 unless no peer works.
#
#   transformers peer: torch (CPU) + transformers 4.46.3 + safetensors + numpy
#   llama.cpp peer:    llama-cpp-python built from source (CPU, Release, -march=native)
#                      + gguf (writes the f32 GGUF of our checkpoint, bench/hf_to_gguf.py)
#
# torch: PyPI's Linux torch wheel (~540 MB) is a CUDA build; `pip install torch` also pulls
# ~3 GB of nvidia-*/cuda-toolkit wheels. With `--no-deps` plus its pure-Python deps it does
# NOT import: even libtorch_cpu.so has DT_NEEDED on libcudart/libcupti, and libtorch_cuda.so
# on cuBLAS, cuDNN, NCCL, cuSPARSE(Lt), cuFFT, cuFile, NVRTC, NVSHMEM ("ValueError:
# libcublasLt.so.*[0-9] not found"). The CPU-only wheels live on the PyTorch index, which is
# not reachable here. So: --no-deps, then bench/torch_cuda_stubs.py compiles tiny stand-ins
# for exactly those CUDA libraries (right SONAMEs and symbol versions, every function
# returning "no device") into torch/lib; torch.cuda.is_available() is then False and all
# compute runs on torch's real CPU kernels (MKL, oneDNN). Checked with torch 2.15.0. If
# that ever fails, the script falls back to the full `pip install torch` (multi-GB).
#
# transformers 4.46.3 is the version the PatchRec authors' code pins (requirements.txt) and
# still has group ("diverse") beam search built in; later versions moved it to a Hub
# download (custom_generate), which cannot be fetched here.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
peers="${PATCHREC_PEERS:-$HOME/.cache/patchrec/peers}"
venv="$peers/venv"
py="$venv/bin/python"
TORCH_VERSION="${PATCHREC_TORCH_VERSION:-2.15.0}"
TRANSFORMERS_VERSION="${PATCHREC_TRANSFORMERS_VERSION:-4.46.3}"
LLAMA_CPP_VERSION="${PATCHREC_LLAMA_CPP_VERSION:-0.3.36}"
only="${PATCHREC_PEERS_ONLY:-transformers,llamacpp}"  # which peers to install
mkdir -p "$peers"

log() { echo "setup-peers: $*" >&2; }
pip_q() { "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"; }

if [ ! -x "$py" ]; then
  log "creating $venv"
  python3 -m venv "$venv" || { log "cannot create a venv (python3 -m venv): no peer can run"; exit 1; }
fi

ok_transformers=0
ok_llamacpp=0

# --- transformers peer -----------------------------------------------------------------
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
torch_ok() { "$py" -c 'import torch; assert torch.ones(2, 2).matmul(torch.ones(2, 2)).sum().item() == 8' >/dev/null 2>&1; }
if ! want transformers; then
  echo "skipping transformers: not in PATCHREC_PEERS_ONLY=$only"
elif ! torch_ok; then
  log "installing torch $TORCH_VERSION (wheel only, no CUDA packages)"
  pip_q filelock 'typing-extensions>=4.13' 'sympy>=1.13.3' 'networkx>=2.5.1' jinja2 'fsspec>=0.8.5' numpy \
    && pip_q --no-deps "torch==$TORCH_VERSION" \
    && "$py" "$here/torch_cuda_stubs.py" "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch/lib" >&2
  if ! torch_ok; then
    log "torch with CUDA stubs does not import; falling back to the full PyPI torch (multi-GB CUDA wheels)"
    pip_q "torch==$TORCH_VERSION" || true
  fi
fi
if ! want transformers; then
  :
elif torch_ok; then
  if ! "$py" -c "import transformers, safetensors, numpy; assert transformers.__version__ == '$TRANSFORMERS_VERSION'" >/dev/null 2>&1; then
    log "installing transformers $TRANSFORMERS_VERSION, safetensors, numpy"
    pip_q "transformers==$TRANSFORMERS_VERSION" safetensors numpy || true
  fi
  if "$py" -c 'import transformers, safetensors, numpy; from transformers import LlamaForCausalLM' >/dev/null 2>&1; then
    ok_transformers=1
  else
    echo "skipping transformers: transformers $TRANSFORMERS_VERSION did not install or import (see pip output above)"
  fi
else
  echo "skipping transformers: torch does not import on this machine (see pip output above)"
fi

# --- llama.cpp peer --------------------------------------------------------------------
# gguf, safetensors and numpy: bench/hf_to_gguf.py writes the f32 GGUF of our checkpoint.
llama_ok() { "$py" -c 'import llama_cpp, gguf, safetensors, numpy' >/dev/null 2>&1; }
if ! want llamacpp; then
  echo "skipping llama.cpp: not in PATCHREC_PEERS_ONLY=$only"
elif ! "$py" -c 'import gguf, safetensors, numpy' >/dev/null 2>&1; then
  pip_q gguf safetensors numpy || true
fi
if want llamacpp && ! "$py" -c 'import llama_cpp' >/dev/null 2>&1; then
  # A fresh machine may have a compiler but no cmake: PyPI's `cmake` wheel puts one in the
  # venv, no root needed.
  if ! command -v cmake >/dev/null && [ ! -x "$venv/bin/cmake" ]; then
    log "installing cmake into $venv (PyPI wheel)"
    pip_q cmake || true
  fi
  if [ -x "$venv/bin/cmake" ]; then
    export PATH="$venv/bin:$PATH"
  fi
  if ! command -v cmake >/dev/null || ! command -v c++ >/dev/null; then
    echo "skipping llama.cpp: building llama-cpp-python needs cmake and a C++ compiler"
  else
    # One build at a time: a second setup run waits for the first one's build (flock)
    # and then finds llama_cpp importable.
    (
      flock 9
      if ! "$py" -c 'import llama_cpp' >/dev/null 2>&1; then
        jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
        log "building llama-cpp-python $LLAMA_CPP_VERSION from source (CPU, Release, $jobs jobs; log: $peers/llama-build.log); this takes a while"
        # LLAVA_BUILD=OFF: the multimodal library is not needed. GGML_NATIVE (default ON)
        # compiles for this CPU (-march=native), as a from-source build should.
        CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
          nohup nice -n 10 "$venv/bin/pip" install -v --disable-pip-version-check \
          --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_VERSION" >"$peers/llama-build.log" 2>&1 &
        wait $! || { log "build failed; last lines of $peers/llama-build.log:"; tail -n 20 "$peers/llama-build.log" >&2; }
      fi
    ) 9>"$peers/llama-build.lock"
  fi
fi
if ! want llamacpp; then
  :
elif llama_ok; then
  ok_llamacpp=1
elif "$py" -c 'import llama_cpp' >/dev/null 2>&1; then
  echo "skipping llama.cpp: gguf, safetensors or numpy did not install (needed to write the f32 GGUF)"
else
  echo "skipping llama.cpp: llama-cpp-python did not build (see $peers/llama-build.log)"
fi

# What works now (also a peer installed earlier but not asked for this time).
torch_ok && "$py" -c 'import transformers, safetensors, numpy' >/dev/null 2>&1 && ok_transformers=1
llama_ok && ok_llamacpp=1
{
  echo "transformers=$ok_transformers"
  echo "llamacpp=$ok_llamacpp"
} >"$peers/status"
if [ "$ok_transformers" = 1 ]; then
  log "transformers peer ready: $("$py" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' 2>/dev/null)"
fi
if [ "$ok_llamacpp" = 1 ]; then
  log "llama.cpp peer ready: llama-cpp-python $("$py" -c 'import llama_cpp; print(llama_cpp.__version__)' 2>/dev/null)"
fi
if [ "$ok_transformers" = 0 ] && [ "$ok_llamacpp" = 0 ]; then
  log "no peer could be installed"
  exit 1
fi
exit 0
