# Only here to hook the cffi extension build into setuptools; all metadata
# lives in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["_native/build_ffi.py:ffibuilder"],
    # The scheduler's per-operation loops in C (optional at run time:
    # ringtrio falls back to its Python code without it).
    ext_modules=[
        Extension(
            "ringtrio._speedups",
            sources=["_native/speedups.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
        )
    ],
)
