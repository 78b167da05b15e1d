"""Build hook: compiles the native evaluator and security-log sealer with cffi (API mode) at install."""

from setuptools import setup

setup(cffi_modules=["native/build_evaluator.py:ffibuilder", "native/build_seal.py:ffibuilder"])
