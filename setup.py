"""Build the optional compiled J/F kernel; everything else is declared in pyproject.toml.

``optional=True``: without a C compiler (or Python headers) the package installs without it and
the metrics run on their torch path, with the same values.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "dinosavi.metrics._jf",
            ["dinosavi/metrics/_jf.c"],
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
