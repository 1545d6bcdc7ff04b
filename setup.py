# setup.py exists only for cffi_modules; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["minginx_cffi/_build.py:ffibuilder"])
