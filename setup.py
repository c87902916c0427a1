"""Build the Cython kernels of cyrnn.

Compiler directives are set once here. CYRNN_DEBUG=1 rebuilds with bounds
checks, wraparound and initialised-memoryview checks on, assertions kept, and
no optimisation, for a debug test run. CYRNN_SANITIZE=1 adds AddressSanitizer
and UndefinedBehaviorSanitizer instrumentation (see tests/sanitize.sh).
"""
import glob
import os
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CYRNN_DEBUG", "0") == "1"
SANITIZE = os.environ.get("CYRNN_SANITIZE", "0") == "1"
# Each configuration generates and compiles in its own build folder: setuptools
# and Cython only compare timestamps, so a shared folder would let a debug
# build silently reuse optimised objects (or a release build sanitised ones).
CONFIG = "sanitize" if SANITIZE else "debug" if DEBUG else "release"

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

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")]
if DEBUG:
    macros.append(("CYRNN_DEBUG", "1"))
else:
    macros.append(("CYTHON_WITHOUT_ASSERTIONS", None))


def extension(name):
    return Extension(
        f"cyrnn.{name}",
        [f"src/{name}.pyx"],
        include_dirs=["src", np.get_include()],
        depends=sorted(glob.glob("src/*.h")),  # recompile when a C header changes
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )


setup(
    ext_modules=cythonize(
        [extension(name) for name in ("_pool", "_rnn", "_lstm", "_activations", "_floor")],
        compiler_directives=directives,
        include_path=["src"],
        build_dir=f"build/{CONFIG}/cython",
    ),
    options={"build": {"build_base": f"build/{CONFIG}"}},
)
