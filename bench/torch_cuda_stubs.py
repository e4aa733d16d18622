#!/usr/bin/env python3
"""Make the PyPI (CUDA) torch wheel import and run on CPU without its multi-GB CUDA wheels.

PyPI's Linux torch wheel is built against CUDA: libtorch_cpu.so itself has DT_NEEDED
entries for libcudart/libcupti, and libtorch_cuda.so/libtorch_python.so for cuBLAS,
cuDNN, NCCL, cuSPARSE(Lt), cuFFT, cuFile, NVRTC and NVSHMEM, which pip normally pulls
as the nvidia-*/cuda-toolkit wheels (about 3 GB). `pip install --no-deps torch` alone
fails at `import torch` ("libcublasLt.so.*[0-9] not found").

This script writes tiny stand-in shared objects for exactly those libraries into
torch/lib (found through torch's $ORIGIN rpath): each has the right SONAME, defines the
symbol versions torch's libraries require (e.g. `libcudart.so.13`), and exports every
symbol torch imports from it. Every stub function returns 100 (cudaErrorNoDevice; a
non-zero status in every CUDA library's convention), the error-string functions return a
message, so `torch.cuda.is_available()` is False and all work stays on the CPU. No CUDA
code ever runs; CPU kernels (MKL/oneDNN inside libtorch_cpu.so) are the real ones.

Usage: torch_cuda_stubs.py SITE_PACKAGES_TORCH_LIB_DIR
"""
import os
import re
import subprocess
import sys
import tempfile

# The CUDA/NVIDIA runtime libraries (cuBLAS, cuDNN, NCCL, NVRTC, NVSHMEM, ...): only these
# are stubbed; anything else missing (a system library) is an error worth seeing.
CUDA = re.compile(r"^lib(cu|nv|nccl)")


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def needed(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run("readelf", "-d", path))


def version_owners(path):
    """{version name: library file} from the binary's version-needs section."""
    owners, current = {}, None
    for line in run("readelf", "-V", "-W", path).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and current:
            owners[m.group(1)] = current
    return owners


def dyn_symbols(path):
    """(defined names, undefined [(name, version or None, type)])"""
    defined, undefined = set(), []
    for line in run("readelf", "--dyn-syms", "-W", path).splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit():
            continue
        typ, ndx, name = parts[3], parts[6], parts[7]
        version = None
        if "@" in name:
            name, _, version = name.partition("@")
            version = version.lstrip("@")
        if ndx == "UND":
            if name:
                undefined.append((name, version, typ))
        else:
            defined.add(name)
    return defined, undefined


def main():
    libdir = sys.argv[1]
    stub_marker = ".patchrec-cuda-stub"
    # Rerunnable: drop the stubs of an earlier run first (their markers name them).
    for f in os.listdir(libdir):
        if f.endswith(stub_marker):
            for g in (f, f[: -len(stub_marker)]):
                if os.path.exists(os.path.join(libdir, g)):
                    os.remove(os.path.join(libdir, g))
    own = [f for f in os.listdir(libdir) if ".so" in f and os.path.isfile(os.path.join(libdir, f))]
    # Libraries torch needs that are neither torch's own nor the system's.
    missing = set()
    for f in own:
        if f.endswith(stub_marker):
            continue
        for n in needed(os.path.join(libdir, f)):
            if n not in own and CUDA.match(n) and n != "libcuda.so.1":
                missing.add(n)
    # libcuda.so.1 is only needed by libcaffe2_nvrtc.so, which torch dlopens on demand.
    provided = set()
    for f in own:
        if f in missing:
            continue
        d, _ = dyn_symbols(os.path.join(libdir, f))
        provided |= d
    for sysdir in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"):
        for f in ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1"):
            p = os.path.join(sysdir, f)
            if os.path.exists(p):
                provided |= dyn_symbols(p)[0]
    versioned = {m: {} for m in missing}   # lib -> {version: set(names)}
    plain = {}                             # name -> type (unversioned, owner unknown)
    for f in own:
        if f in missing:
            continue
        owners = version_owners(os.path.join(libdir, f))
        for name, version, typ in dyn_symbols(os.path.join(libdir, f))[1]:
            owner = owners.get(version)
            if owner in missing:
                versioned[owner].setdefault(version, set()).add((name, typ))
            elif version is None and name not in provided:
                plain[name] = typ
    with tempfile.TemporaryDirectory() as tmp:
        for lib in sorted(missing):
            syms = {}
            for version, names in versioned[lib].items():
                for name, typ in names:
                    syms[name] = (version, typ)
            # Unversioned imports could come from any missing library: every stub without
            # version nodes exports them all (the first one loaded wins; all are inert).
            if not versioned[lib]:
                for name, typ in plain.items():
                    syms.setdefault(name, (None, typ))
            src = ["static const char msg[] = \"CUDA is not installed (patchrec CPU stub)\";",
                   "static long stub_status(void) { return 100; }",
                   "static const char *stub_string(void) { return msg; }"]
            for name, (version, typ) in sorted(syms.items()):
                if typ == "OBJECT" or typ == "TLS":
                    src.append(f'__attribute__((visibility("default"))) char {name}[256];')
                elif "ErrorString" in name or "ErrorName" in name or name.endswith("GetErrorString") or name.endswith("GetErrorName"):
                    src.append(f'extern const char *{name}(void) __attribute__((alias("stub_string"), visibility("default")));')
                else:
                    src.append(f'extern long {name}(void) __attribute__((alias("stub_status"), visibility("default")));')
            c = os.path.join(tmp, "stub.c")
            with open(c, "w") as fh:
                fh.write("\n".join(src) + "\n")
            vs = os.path.join(tmp, "stub.map")
            with open(vs, "w") as fh:
                if versioned[lib]:
                    for version, names in versioned[lib].items():
                        fh.write(f"{version} {{ global: {'; '.join(sorted(n for n, _ in names))}; }};\n")
                    fh.write("LOCAL_STUB { local: *; };\n")
                else:
                    fh.write("{ global: *; local: stub_status; stub_string; msg; };\n")
            out = os.path.join(libdir, lib)
            subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-w", "-o", out, f"-Wl,-soname,{lib}",
                            f"-Wl,--version-script={vs}", c], check=True)
            open(out + stub_marker, "w").close()
            print(f"stub {lib}: {len(syms)} symbols")


if __name__ == "__main__":
    main()
