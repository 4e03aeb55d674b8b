"""`load_denoiser`: a preset, a vdrt checkpoint directory, or a diffusers-format directory -> nn.Module.

Sources, tried in this order:
- a directory with `manifest.json`: an engine; refused here (use `vdrt.load_engine`);
- a diffusers pipeline root (`model_index.json`): its `transformer/` subfolder;
- a directory with `config.json`: diffusers (`_class_name`) or vdrt native (`family`), weights
  from `*.safetensors` (sharded with `*.safetensors.index.json` too);
- an embedded model shipped inside the package (see `vdrt.embedded`);
- a preset name: random weights, said in a log line.
"""
from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import torch

from vdrt import models
from vdrt.checkpoint import check_state_dict, read_state_dict
from vdrt.errors import CheckpointError, ConfigError, InputTypeError

log = logging.getLogger(__name__)

# diffusers class name -> module with config_from_diffusers / state_dict_from_diffusers
DIFFUSERS_CONVERTERS = {
    "WanTransformer3DModel": "vdrt.models.wan_convert",
    "LatteTransformer3DModel": "vdrt.models.latte_convert",
}


def load_denoiser(source, dtype: torch.dtype = torch.float32, device="cpu", trust_pickle: bool = False, lora=None):
    """Load a denoiser module in eval mode on `device` with `dtype`.

    `lora`: LoRA files (paths or (path, scale) pairs), fused into the weights in order, after the
    move to `device` (see vdrt.models.lora); the paths and scales are checked before anything loads.
    """
    from vdrt.models.lora import apply_loras, check_lora_arg

    dtype, device = check_dtype(dtype), check_device(device)
    if not isinstance(trust_pickle, bool):
        raise InputTypeError(f"trust_pickle={trust_pickle!r} must be True or False")
    specs = check_lora_arg(lora, trust_pickle=trust_pickle)  # a pickle LoRA is refused before the base loads
    model = _load(source, trust_pickle).to(device=device, dtype=dtype).eval().requires_grad_(False)
    apply_loras(model, specs, fuse=True, trust_pickle=trust_pickle)
    return model


def _load(source, trust_pickle: bool):
    if not isinstance(source, (str, Path)) and not hasattr(source, "__fspath__"):
        raise InputTypeError(f"source={source!r} must be a preset or embedded model name, or a checkpoint directory "
                             f"path, not a {type(source).__name__}")
    path = Path(str(source)).expanduser()
    if path.is_dir():
        return load_directory(path, trust_pickle)
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint directory holding config.json and the weights")
    from vdrt import embedded

    if str(source) in embedded.names():
        return embedded.load(str(source))
    if "/" in str(source) or str(source).startswith("."):
        raise CheckpointError(f"{source}: no such directory")
    return from_preset(str(source))


def from_preset(name: str):
    config = models.config_from_name(name)
    log.info("model %s: preset with RANDOM weights (no checkpoint given)", name)
    torch.manual_seed(0)
    return models.build_model(config)


def load_directory(path: Path, trust_pickle: bool = False):
    if (path / "manifest.json").is_file():
        raise ConfigError(f"{path} is an engine directory; load it with vdrt.load_engine() or `vdrt run`")
    if (path / "model_index.json").is_file():
        if not (path / "transformer").is_dir():
            raise CheckpointError(f"{path} is a diffusers pipeline without a transformer/ folder; vdrt loads DiT denoisers")
        path = path / "transformer"
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint directory: it has no config.json (and no model_index.json)")
    cfg = read_json(config_file)
    if "_class_name" in cfg:
        return _load_diffusers(path, cfg, trust_pickle)
    if "family" in cfg:
        return _load_native(path, cfg, trust_pickle)
    raise CheckpointError(f"{config_file} names neither a diffusers class (_class_name) nor a vdrt family (family)")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from e


def _converter(path: Path, cfg: dict):
    cls = cfg["_class_name"]
    if cls not in DIFFUSERS_CONVERTERS:
        raise CheckpointError(f"{path}: diffusers class {cls!r} is not supported; supported: {sorted(DIFFUSERS_CONVERTERS)}")
    return importlib.import_module(DIFFUSERS_CONVERTERS[cls]), _learned_sigma(cls, cfg)


def diffusers_config(path: Path, cfg: dict):
    """The vdrt model config of a diffusers denoiser's config.json (no weights read)."""
    conv, kw = _converter(path, cfg)
    return conv.config_from_diffusers(cfg, **kw)


def _load_diffusers(path: Path, cfg: dict, trust_pickle: bool):
    conv, kw = _converter(path, cfg)
    config = conv.config_from_diffusers(cfg, **kw)
    state = conv.state_dict_from_diffusers(read_state_dict(path, trust_pickle), **kw)
    return _build_with(config, state, str(path))


def _learned_sigma(cls: str, cfg: dict) -> dict:
    """Latte-1 predicts noise and a learned variance (out = 2 * in); the sampler uses only the noise half."""
    if cls == "LatteTransformer3DModel" and cfg.get("out_channels") == 2 * cfg.get("in_channels", 4):
        log.info("dropping the learned-sigma half of the output projection (as diffusers' LattePipeline does)")
        return {"drop_sigma": True}
    return {}


def _load_native(path: Path, cfg: dict, trust_pickle: bool):
    config = models.config_from_dict(cfg)
    return _build_with(config, read_state_dict(path, trust_pickle), str(path))


def _build_with(config, state: dict, source: str):
    with torch.device("meta"):
        model = models.build_model(config)
    check_state_dict(model, state, source)
    model = models.build_model(config)  # real buffers (rope tables etc.), then the weights
    model.load_state_dict(state, strict=True)
    log.info("loaded %s (%s, %.1fM params)", source, config.family, sum(p.numel() for p in model.parameters()) / 1e6)
    return model


def save_native(model, out: Path) -> None:
    """Write a vdrt checkpoint directory (config.json + model.safetensors), atomically per file."""
    from safetensors.torch import save_file

    from vdrt.fsutil import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(model.config.to_json())


# ---------------------------------------------------------------- argument checks (the API's, shared)

# every spelling of the floating dtypes a denoiser runs in (torch's, vdrt's precision names, numpy's)
DTYPE_NAMES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
               "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
               "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
               "float64": torch.float64, "fp64": torch.float64, "double": torch.float64}
RUN_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
DEVICE_TYPES = ("cpu", "cuda")


def check_dtype(dtype, what: str = "dtype") -> torch.dtype:
    """A torch dtype or its name ("float16", "bf16", "torch.float32") -> a floating torch dtype a model runs in."""
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key not in DTYPE_NAMES:
            raise ConfigError(f"{what}={dtype!r} is not a dtype vdrt runs in; use one of {sorted(DTYPE_NAMES)}")
        return DTYPE_NAMES[key]
    if not isinstance(dtype, torch.dtype):
        raise InputTypeError(f"{what}={dtype!r} must be a torch dtype (e.g. torch.bfloat16) or its name, "
                             f"not a {type(dtype).__name__}")
    if dtype not in RUN_DTYPES:
        raise ConfigError(f"{what}={dtype} is not a dtype a denoiser runs in: use torch.float32, torch.bfloat16 "
                          "or torch.float16 (fp8/int8 weights: `vdrt build --precision fp8 --backend tensorrt`)")
    return dtype


def check_device(device) -> torch.device:
    """"cpu", "cuda", "cuda:N", an int (a CUDA index) or a torch.device -> a device this process has."""
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise InputTypeError(f"device={device!r} must be 'cpu', 'cuda', 'cuda:N' or a torch.device, "
                             f"not a {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device={device!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in DEVICE_TYPES:
        raise ConfigError(f"device={device!r}: vdrt runs on {' or '.join(DEVICE_TYPES)}, not {dev.type}")
    if dev.type == "cuda":
        _check_cuda(dev)
    return dev


def _check_cuda(dev: torch.device) -> None:
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else "torch, but no CUDA GPU is visible"
        raise ConfigError(f"device {dev} was asked for, but this process has {build} (torch {torch.__version__}); "
                          "use device 'cpu', or install a CUDA build of torch on a machine with a GPU")
    count = torch.cuda.device_count()
    if dev.index is not None and not 0 <= dev.index < count:
        raise ConfigError(f"device {dev}: this process sees {count} CUDA GPU(s) (cuda:0 .. cuda:{count - 1})")
