# setup.py exists only for cffi_modules; everything else is in pyproject.toml.
import platform

from setuptools import setup

# On CPython the engine is built against the stable ABI (cffi's default), so one wheel
# serves every CPython from 3.9 on: tag it so.  PyPy's wheels carry PyPy's own tag.
options = {}
if platform.python_implementation() == "CPython":
    options["bdist_wheel"] = {"py_limited_api": "cp39"}

setup(cffi_modules=["minginx_cffi/_build.py:ffibuilder"], options=options)
