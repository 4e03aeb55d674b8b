"""Errors that reach users: one clear line naming the problem and the fix.

The CLI turns every `VdrtError` into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.
"""


class VdrtError(Exception):
    """Bad input or a missing dependency; the message names the problem and the fix."""


class ConfigError(VdrtError):
    """An unknown preset, a bad option or a shape the model cannot take."""


class CheckpointError(VdrtError):
    """A checkpoint that is missing, unsafe, incomplete or does not fit the model."""


class MediaError(VdrtError):
    """An image, video or mask that cannot be read or does not fit."""


class EngineError(VdrtError):
    """An engine directory that is corrupt, tampered with, or incompatible."""


class SamplingError(VdrtError):
    """Sampling went wrong at run time (NaN in the latents, bad schedule)."""


class MissingDependency(VdrtError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"{module} is not installed; install it with `pip install 'vdrt[{extra}]'`")
        self.module, self.extra = module, extra


# The extra of pyproject.toml that installs each optional module (tests check the two agree).
EXTRAS = {"av": "video", "diffusers": "diffusers", "transformers": "diffusers", "onnx": "onnx", "onnxscript": "onnx",
          "onnxruntime": "ort", "tensorrt": "trt", "triton": "triton", "cuda.bindings": "cuda"}


def require(module: str, extra: str | None = None):
    """Import `module` lazily, raising MissingDependency naming its extra (EXTRAS) if it is absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(module, extra or EXTRAS[module]) from e


def dist_version(dist: str) -> str | None:
    """The installed version of distribution `dist` (package metadata only, nothing imported), or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
