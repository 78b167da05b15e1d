"""Build hook: compiles the native evaluator with cffi (API mode) at install time."""

from setuptools import setup

setup(cffi_modules=["native/build_evaluator.py:ffibuilder"])
