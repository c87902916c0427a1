"""Build the Cython kernels of cyrnn.

Compiler directives are set once here. CYRNN_DEBUG=1 rebuilds with bounds
checks, wraparound and initialised-memoryview checks on, assertions kept, and
no optimisation, for a debug test run. CYRNN_SANITIZE=1 adds AddressSanitizer
and UndefinedBehaviorSanitizer instrumentation (see .ci/sanitize). CYRNN_ARCH
builds for one instruction set (see below and .ci/isa).
"""
import glob
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CYRNN_DEBUG", "0") == "1"
SANITIZE = os.environ.get("CYRNN_SANITIZE", "0") == "1"
# CYRNN_ARCH=x86-64-v3 (or any -march value, or "baseline" for the compiler's
# default) compiles everything for that one instruction set instead of cloning
# the elementwise kernels for SSE2/AVX2/AVX-512: a CPU runs only the clone it
# supports, so this is how CI tests, on an AVX-512 machine, the code that
# AVX2-only and older CPUs run (.ci/isa).
ARCH = os.environ.get("CYRNN_ARCH", "")
# Each configuration generates and compiles in its own build folder: setuptools
# and Cython only compare timestamps, so a shared folder would let a debug
# build silently reuse optimised objects (or a release build sanitised ones).
CONFIG = "sanitize" if SANITIZE else "debug" if DEBUG else "release"
if ARCH:
    CONFIG += "-" + ARCH
# Generated C per interpreter and NumPy too: it follows NumPy's .pxd, and builds
# for several Pythons from one tree must not reuse each other's.
GENERATED_C = (f"build/{CONFIG}/cython-{sys.implementation.name}"
               f"{sys.version_info[0]}{sys.version_info[1]}-numpy{np.__version__}")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

if sys.platform == "win32":
    compile_args = ["/O2"]
    link_args = []
else:
    # -fno-trapping-math lets GCC vectorise the branch-free selects in
    # cyrnn_math.h; no -ffast-math, so NaN/inf keep IEEE semantics.
    # -g0: no debug info in release wheels (a third of their size)
    compile_args = ["-O0", "-g"] if DEBUG else ["-O3", "-g0"]
    compile_args += ["-fno-trapping-math", "-Wno-unused-function"]
    link_args = []
    if SANITIZE:
        flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        compile_args += flags + ["-O1", "-g"]
        link_args += flags

# NPY_TARGET_VERSION: the oldest NumPy the built modules must run with (the
# runtime lower bound in pyproject.toml). It also decides which C-API functions
# the headers expose: NumPy 2.2's (the last for Python 3.10) default to the 1.21
# API, which lacks PyDataMem_SetHandler, and the module failed to import there.
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION"),
          ("NPY_TARGET_VERSION", "NPY_1_25_API_VERSION")]
if ARCH:
    macros.append(("CYRNN_NO_CLONES", None))
    if ARCH != "baseline" and sys.platform != "win32":
        compile_args.append(f"-march={ARCH}")
if DEBUG:
    macros.append(("CYRNN_DEBUG", "1"))
else:
    macros.append(("CYTHON_WITHOUT_ASSERTIONS", None))


def extension(name):
    return Extension(
        f"cyrnn.{name}",
        [f"src/{name}.pyx"],
        include_dirs=["src", np.get_include()],
        depends=sorted(glob.glob("src/*.h") + glob.glob("src/engine/*.pxi")),  # recompile on changes
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )


setup(
    ext_modules=cythonize(
        [extension(name) for name in ("_pool", "_engine", "_activations", "_train")],
        compiler_directives=directives,
        include_path=["src"],
        build_dir=GENERATED_C,
    ),
    options={"build": {"build_base": f"build/{CONFIG}"}},
)
