"""`Pipeline.to(device)`: move the eager parts (denoiser module, VAE, encoders) to another device or dtype."""
from __future__ import annotations

import torch

from vdrt.errors import ConfigError


def move_parts(pipe, device: torch.device, dtype: torch.dtype) -> None:
    """Move the pipeline's eager parts; a compiled engine cannot move (rebuild it for the device)."""
    from vdrt.engines.torch import TorchEngine

    if isinstance(pipe.engine, TorchEngine):
        if pipe.engine.cuda_graphs and device.type != "cuda":
            raise ConfigError("this pipeline replays CUDA graphs; it cannot move to " + str(device))
        pipe.engine.module.to(device=device, dtype=dtype)
        pipe.engine.reset_graphs()
    elif torch.device(pipe.engine.device) != device:
        raise ConfigError(f"a compiled {type(pipe.engine).__name__} runs where it was loaded ({pipe.engine.device}); "
                          f"load it with device={str(device)!r} instead of moving it")
    for part in (pipe.codec, pipe.text_encoder, pipe.image_encoder):
        _move(part, device)


def _move(part, device: torch.device) -> None:
    """Move every module and tensor attribute of an encoder / codec; the codec's VAE keeps its dtype."""
    if part is None:
        return
    for name, value in list(vars(part).items()):
        if isinstance(value, torch.nn.Module):
            value.to(device)
        elif isinstance(value, torch.Tensor):
            setattr(part, name, value.to(device))
        elif name == "device":
            setattr(part, name, device)
        elif hasattr(value, "__dict__") and not isinstance(value, type) and type(value).__module__.startswith("vdrt"):
            _move(value, device)
