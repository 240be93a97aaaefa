# Only here to hook the cffi extension build into setuptools; all metadata
# lives in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["_native/build_ffi.py:ffibuilder"],
    # An accelerator for two per-operation loops of the scheduler
    # (ringtrio/_core): optional at run time, ringtrio falls back to its
    # Python code without it.
    ext_modules=[
        Extension(
            "ringtrio._core._speedups",
            sources=["ringtrio/_core/_speedups.c"],
            # #included by _speedups.c (the Buffer lease's C base)
            depends=["ringtrio/_core/_speedups_lease.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
        )
    ],
)
