# Only here to hook the cffi extension build into setuptools; all metadata
# lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["_native/build_ffi.py:ffibuilder"])
