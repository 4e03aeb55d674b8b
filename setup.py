"""Build glue only: map the top-level kernels/ and export/ folders into the vdrt namespace."""
from setuptools import find_packages, setup

runtime = [p for p in find_packages(include=["vdrt", "vdrt.*"])]
setup(
    packages=runtime + ["vdrt.kernels", "vdrt.export", "vdrt.csrc"]
    + [f"vdrt.export.{p}" for p in find_packages("export")],
    package_dir={"vdrt.kernels": "kernels", "vdrt.export": "export", "vdrt.csrc": "csrc"},
    package_data={"vdrt": ["weights/*.safetensors", "weights/*.json"], "vdrt.csrc": ["*.cu", "*.cuh"]},
    include_package_data=True,
)
