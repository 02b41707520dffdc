"""Only the optional C extension lives here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

# optional: a machine without a C compiler still installs Kittiwake, on the Python twin of
# this code (engine/_runtime/hot_path.py).
setup(ext_modules=[
    Extension("engine._runtime._speedups", ["engine/_runtime/_speedups.c"], optional=True),
])
