"""ONE `resolve(source)` for generate, bench and build: a model source -> the parts that run it.

Sources, tried in this order: an engine directory (manifest.json), a diffusers Wan pipeline
directory (model_index.json), a vdrt or diffusers denoiser directory (config.json), an embedded
model (a card, `vdrt.embedded`), a preset (random weights).

- `describe(source) -> ModelInfo` reads only JSON (card, config, manifest) or a preset table: no
  weight is loaded, so a request can be checked against the model's sizes and defaults first.
- `resolve(source, dtype=, device=, ...) -> Parts` loads the denoiser (as an Engine), its codec, its
  text and image encoders.
- `load_denoiser_for(source, ...)`: the denoiser module alone, for `vdrt build` and `vdrt bench`.

Generation defaults come from the model's card, or from its config (`defaults_for`), never
from its name.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from vdrt.errors import ConfigError
from vdrt.request import Defaults

log = logging.getLogger(__name__)

# Wan2.1's own generation settings (480p, 81 frames, 50 UniPC steps) for real-size Wan models,
# and a small size for the small test configs (dim < WAN_FULL_DIM).
WAN_FULL = Defaults(num_frames=81, height=480, width=832, num_steps=50, guidance=5.0, sampler="unipc", shift=5.0,
                    fps=16)
WAN_SMALL = Defaults(num_frames=17, height=128, width=128, num_steps=4, guidance=5.0, sampler="unipc", shift=5.0,
                     fps=16)
WAN_FULL_DIM = 1536  # Wan2.1-1.3B's width; every released Wan2.1 model is at least this wide


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a source is, without its weights: kind, name, model config, generation defaults, its card."""

    kind: str  # engine | diffusers | checkpoint | embedded | preset
    name: str
    config: object
    defaults: Defaults
    card: object = None  # vdrt.embedded.Card for embedded models (and engines built from one)

    @property
    def geometry(self):
        """The latent geometry (channels, frame/space factors, size multiple) the codec will have."""
        from vdrt.pipeline.codecs import LatentGeometry

        patch = self.config.patch_size[-1]
        if self.config.in_channels == 3:
            return LatentGeometry(channels=3, time_factor=1, space_factor=1, multiple=patch)
        return LatentGeometry(channels=self.config.in_channels, time_factor=4, space_factor=8, multiple=8 * patch)


@dataclasses.dataclass
class Parts:
    """Everything a Pipeline runs: the engine (denoiser), codec, encoders, and the model's info."""

    engine: object  # vdrt.engines.base.Engine
    codec: object
    text_encoder: object
    info: ModelInfo
    image_encoder: object = None

    @property
    def defaults(self) -> Defaults:
        return self.info.defaults

    @property
    def name(self) -> str:
        return self.info.name


def defaults_for(cfg) -> Defaults:
    """Generation defaults from a model config: Wan models by their width, others the small default."""
    if cfg.family == "wan":
        return WAN_FULL if cfg.dim >= WAN_FULL_DIM else WAN_SMALL
    return Defaults()


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # also taken (torch's names)


def precision_name(name: str | None, flag: str = "--precision", device=None) -> str | None:
    """THE precision vocabulary: fp32 | bf16 | fp16 (or torch's names); None -> the device's default (or None)."""
    if name is None:
        return None if device is None else ("bf16" if torch.device(device).type == "cuda" else "fp32")
    key = PRECISION_NAMES.get(name, name)
    if key not in PRECISIONS:
        raise ConfigError(f"{flag} {name!r} is not one of {sorted(PRECISIONS)} (torch's names "
                          f"{sorted(PRECISION_NAMES)} are taken too)")
    return key


def device_and_dtype(device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
    """The device (CUDA when present) and its default dtype (bf16 on CUDA, fp32 on the CPU); both checked
    (`vdrt.loader.check_device` / `check_dtype`: a dtype's name is taken too)."""
    from vdrt.loader import check_device, check_dtype

    device = check_device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, check_dtype(dtype) if dtype is not None else \
        (torch.bfloat16 if device.type == "cuda" else torch.float32)


# ---------------------------------------------------------------- describe (no weights)


def describe(source) -> ModelInfo:
    """The kind, config and defaults of `source`, reading JSON only."""
    from vdrt import embedded, models

    if not isinstance(source, (str, Path)) and not hasattr(source, "__fspath__"):
        from vdrt.errors import InputTypeError

        raise InputTypeError(f"source={source!r} must be a preset or embedded model name, or a model or engine "
                             f"directory path, not a {type(source).__name__}")
    path = Path(str(source)).expanduser()
    if path.is_dir() and (path / "manifest.json").is_file():
        return _describe_engine(path)
    if path.is_dir():
        cfg = _checkpoint_config(path)
        recipe = _checkpoint_recipe(path)
        kind = "diffusers" if (path / "model_index.json").is_file() else "checkpoint"
        return ModelInfo(kind, str(path), cfg, defaults_for(cfg).replace(recipe=recipe))
    if str(source) in embedded.names():
        from vdrt.pipeline.native import check_layout

        card = embedded.card(str(source))
        cfg = models.config_from_dict(card.config)
        check_layout(cfg, card.cond_layout, card.name)
        return ModelInfo("embedded", str(source), cfg, Defaults.from_card(card.defaults, card.trained_range), card)
    _refuse_missing_path(path, source)
    cfg = models.config_from_name(str(source))
    return ModelInfo("preset", str(source), cfg, defaults_for(cfg))


def _refuse_missing_path(path: Path, source) -> None:
    from vdrt.errors import CheckpointError

    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint directory holding config.json and the weights")
    if "/" in str(source) or str(source).startswith("."):
        raise CheckpointError(f"{source}: no such directory")


def _describe_engine(path: Path) -> ModelInfo:
    from vdrt import embedded
    from vdrt.engines import inspect_engine
    from vdrt.engines.base import config_object

    m = inspect_engine(path)
    cfg = config_object(m["model_config"])
    options = m.get("build", {}).get("options", {})
    recipe = _named_recipe(options, path / "manifest.json")  # recorded by `vdrt build` (see vdrt build --recipe)
    if options.get("source") in embedded.names():  # built from an embedded model: its own text encoder and defaults
        card = embedded.card(options["source"])
        defaults = Defaults.from_card(card.defaults, card.trained_range)
        return ModelInfo("engine", str(path), cfg, defaults.replace(recipe=recipe), card)
    return ModelInfo("engine", str(path), cfg, defaults_for(cfg).replace(recipe=recipe))


def _named_recipe(d, where) -> str | None:
    """The few-step recipe a config names (its "recipe" key; docs/lora.md), checked to be a name."""
    name = d.get("recipe") if isinstance(d, dict) else None
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigError(f"{where}: \"recipe\" must name a few-step recipe (a string), got {name!r}")
    return name


def _json(path: Path) -> dict:
    from vdrt import loader

    return loader.read_json(path)


def _checkpoint_recipe(path: Path) -> str | None:
    """The few-step recipe a checkpoint names: in a diffusers pipeline's model_index.json or in the model's own
    config.json (transformer/config.json); two different names are refused."""
    files = [path / "model_index.json", path / "transformer" / "config.json", path / "config.json"]
    named = {f: _named_recipe(_json(f), f) for f in files if f.is_file()}
    names = {n for n in named.values() if n}
    if len(names) > 1:
        raise ConfigError(f"{path}: its configs name different few-step recipes "
                          f"({', '.join(f'{f.name}: {n}' for f, n in named.items() if n)}); keep one")
    return names.pop() if names else None


def _checkpoint_config(path: Path):
    """The model config of a checkpoint directory from its config.json alone."""
    from vdrt import loader, models

    root = path / "transformer" if (path / "model_index.json").is_file() else path
    if not (root / "config.json").is_file():
        from vdrt.errors import CheckpointError

        raise CheckpointError(f"{path} is not a checkpoint directory: it has no config.json (and no model_index.json)")
    cfg = loader.read_json(root / "config.json")
    if "_class_name" in cfg:
        return loader.diffusers_config(root, cfg)
    return models.config_from_dict(cfg)


# ---------------------------------------------------------------- resolve (loads)


def resolve(source, dtype=None, device=None, cuda_graphs: bool = False, trust_pickle: bool = False,
            lora=None) -> Parts:
    """Load `source` into the parts a Pipeline runs (see the module doc for the kinds of source).

    `lora`: LoRA files (paths or (path, scale) pairs), checked before anything loads and fused into the
    denoiser; an engine's weights are baked, so it must have been built with exactly those (vdrt build --lora).
    """
    from vdrt.models.lora import apply_loras, check_lora_arg

    specs = check_lora_arg(lora, trust_pickle)
    device, dtype = device_and_dtype(device, dtype)
    info = describe(source)
    if info.kind == "engine":
        from vdrt.pipeline.adapters import check_engine

        check_engine(info.name, specs)
        return _from_engine_dir(info, device, cuda_graphs)
    parts = _from_card(info, dtype, device, cuda_graphs) if info.kind == "embedded" else \
        _from_module(source, info, dtype, device, cuda_graphs, trust_pickle)
    apply_loras(parts.engine.module, specs, fuse=True, trust_pickle=trust_pickle)
    return parts


def _from_module(source, info: ModelInfo, dtype, device, cuda_graphs, trust_pickle) -> Parts:
    den = load_denoiser_for(source, dtype, device, trust_pickle)
    if info.kind == "diffusers":
        return _from_diffusers_pipeline(Path(info.name), den, info, dtype, device, cuda_graphs)
    return Parts(_engine(den, cuda_graphs), codec_for(den.config, device), _placeholder_text(den.config), info)


def load_denoiser_for(source, dtype=torch.float32, device="cpu", trust_pickle: bool = False, lora=None):
    """The denoiser module of any non-engine source (a card, checkpoint, diffusers dir or preset), with
    `lora` fused in (vdrt.load_denoiser's argument)."""
    from vdrt.loader import load_denoiser

    return load_denoiser(source, dtype=dtype, device=device, trust_pickle=trust_pickle, lora=lora)


def _engine(module, cuda_graphs: bool):
    from vdrt.engines.torch import TorchEngine

    return TorchEngine(module, cuda_graphs=cuda_graphs)


def codec_for(cfg, device, vae_dir: Path | None = None):
    from vdrt.pipeline.codecs import PixelCodec, WanVAECodec

    patch = cfg.patch_size[-1]
    if cfg.in_channels == 3:
        return PixelCodec(patch)
    if cfg.family == "wan":
        if vae_dir is not None:
            return WanVAECodec.from_directory(vae_dir, patch, device=device)  # bf16 fast path on CUDA
        return WanVAECodec.random(patch, dtype=None, device=device)
    raise ConfigError(f"a {cfg.family} model with {cfg.in_channels} latent channels needs a VAE to make video; "
                      "use a diffusers directory with vae/, or call the denoiser directly (vdrt.load_denoiser)")


def _placeholder_text(cfg):
    from vdrt.pipeline.encoders import HashTextEncoder

    log.info("text: placeholder hashed-word encoder (random-weight model; prompts carry no learned meaning)")
    return HashTextEncoder(cfg.text_dim)


def _from_card(info: ModelInfo, dtype, device, cuda_graphs) -> Parts:
    from vdrt.pipeline.codecs import PixelCodec

    state = info.card.state()
    den = info.card.denoiser(state).to(device=device, dtype=dtype)
    text = info.card.text_encoder(state, device)
    return Parts(_engine(den, cuda_graphs), PixelCodec(den.config.patch_size[-1]), text, info)


def _from_diffusers_pipeline(root: Path, den, info: ModelInfo, dtype, device, cuda_graphs) -> Parts:
    from vdrt.pipeline.encoders import ClipImageEncoder, UMT5TextEncoder

    cfg = den.config
    codec = codec_for(cfg, device, vae_dir=root / "vae" if (root / "vae").is_dir() else None)
    text = UMT5TextEncoder(root, max_len=cfg.text_len, device=device) if (root / "text_encoder").is_dir() else None
    image = ClipImageEncoder(root, device=device) if (root / "image_encoder").is_dir() else None
    return Parts(_engine(den, cuda_graphs), codec, text, info, image)


def _from_engine_dir(info: ModelInfo, device, cuda_graphs: bool = False) -> Parts:
    from vdrt.engines import load_engine

    engine = load_engine(info.name, device=device, cuda_graphs=cuda_graphs)
    text = info.card.text_encoder(device=device) if info.card is not None else _placeholder_text(info.config)
    return Parts(engine, codec_for(info.config, device), text, info)
