"""Errors that reach users: one clear line naming the problem and the fix.

The CLI turns every `VdrtError` into one line on stderr and exit code 2; anything
else is a bug and keeps its traceback.

Each one is also the builtin an API caller would catch: bad values are `ValueError`s
(`ConfigError`, `CheckpointError`, `MediaError`, `EngineError`), a value of the wrong type a
`TypeError` too (`InputTypeError`), a refused size a `MemoryError` too (`MemoryLimitError`),
a failure at run time a `RuntimeError` (`SamplingError`), a missing module an `ImportError`
(`MissingDependency`).
"""


class VdrtError(Exception):
    """Bad input or a missing dependency; the message names the problem and the fix."""


class ConfigError(VdrtError, ValueError):
    """An unknown preset, a bad option or a shape the model cannot take."""


class InputTypeError(ConfigError, TypeError):
    """An argument of the wrong type (a string for a number, None for a seed, a bool for a count)."""


class MemoryLimitError(ConfigError, MemoryError):
    """A request whose estimated memory exceeds what the device has; the message says what would fit."""


class CheckpointError(VdrtError, ValueError):
    """A checkpoint that is missing, unsafe, incomplete or does not fit the model."""


class MediaError(VdrtError, ValueError):
    """An image, video or mask that cannot be read or does not fit."""


class EngineError(VdrtError, ValueError):
    """An engine directory that is corrupt, tampered with, or incompatible."""


class SamplingError(VdrtError, RuntimeError):
    """Sampling went wrong at run time (NaN in the latents, bad schedule)."""


class MissingDependency(VdrtError, ImportError):
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
