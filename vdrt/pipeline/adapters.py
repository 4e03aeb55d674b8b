"""LoRAs on the Pipeline: diffusers' method names over vdrt.models.lora, and the engine-side checks.

    pipe = vdrt.Pipeline.from_pretrained("ckpt/Wan2.1-T2V-1.3B")
    pipe.load_lora_weights("style.safetensors", adapter_name="style", scale=0.8)   # unfused: hot-swappable
    pipe.set_adapters(["style"], [0.5]); pipe.fuse_lora(); pipe.unfuse_lora(); pipe.unload_lora_weights()

The methods act on the torch engine's module (`pipe.engine.module`) and only delegate: the adapters,
their scales and the weights are vdrt.models.lora's. A compiled engine (AOTI, ONNX, TensorRT) has its
weights baked in, so they are refused there with the fix: fuse at build time (`vdrt build --lora`).
`Pipeline.from_pretrained(..., lora=[(path, scale)])` fuses instead (what `vdrt generate --lora` does).
"""
from __future__ import annotations

import logging
from pathlib import Path

from vdrt.errors import ConfigError
from vdrt.models import lora

log = logging.getLogger(__name__)

TRANSFORMER = "transformer"  # diffusers' name of the one component vdrt's LoRAs go onto


def lora_specs(flags, trust_pickle: bool = False) -> list[tuple[str, float]]:
    """`--lora PATH[:SCALE]` values (CLI, TOML) -> checked [(path, scale)]: files exist, safetensors (a pickle only
    with the trust flag), scales finite; nothing is read yet."""
    if flags is None:
        return []
    flags = [flags] if isinstance(flags, str) else list(flags)
    return lora.check_lora_arg([lora.parse_lora_flag(f) for f in flags], trust_pickle)


def engine_loras(manifest: dict) -> list[dict]:
    """The LoRAs an engine was built with (`lora_manifest_entries` rows), from its manifest: a top-level
    "loras" key, else the build options `vdrt build --lora` records them in."""
    entries = manifest.get("loras")
    if entries is None:
        entries = manifest.get("build", {}).get("options", {}).get("loras")
    return list(entries or [])


def check_engine(path, specs: list) -> None:
    """`vdrt run ENGINE --lora ...`: only the LoRAs (by sha256) and scales the engine was built with."""
    from vdrt.engines import inspect_engine

    entries = engine_loras(inspect_engine(path))
    if specs:
        lora.check_engine_loras(entries, specs)
    elif entries:
        log.info("engine %s carries fused LoRAs: %s", path, ", ".join(f"{e.get('file')}:{e.get('scale')}"
                                                                       for e in entries))


class LoraLoaderMixin:
    """diffusers' LoRA methods for `vdrt.Pipeline` (which has `.engine`). See the module docstring."""

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name: str | None = None,
                          scale: float = 1.0, weight_name: str | None = None, trust_pickle: bool = False) -> str:
        """Load a LoRA (a file, a folder + `weight_name`, or a state dict) as an unfused adapter at `scale`;
        returns its adapter name (the file's stem unless given). Refused on a compiled engine."""
        module = self._lora_module("load_lora_weights")
        source = pretrained_model_name_or_path_or_dict
        if weight_name is not None:
            source = Path(source) / weight_name
        name = lora.load_lora(module, source, scale=scale, adapter_name=adapter_name, trust_pickle=trust_pickle)
        self._lora_changed()
        return name

    def set_adapters(self, adapter_names, adapter_weights=None) -> None:
        """Make exactly `adapter_names` active, at `adapter_weights` (one number, or one per name; None = 1.0);
        every other adapter is disabled (kept loaded), as in diffusers."""
        module = self._lora_module("set_adapters")
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        weights = _weights(names, adapter_weights)
        for name in names:
            lora.apply.get(module, name)  # every name known before anything changes
        for name in lora.apply.adapters(module):
            if name not in names:
                lora.disable_lora(module, name)
        for name, weight in zip(names, weights):
            lora.set_lora_scale(module, name, weight)
            lora.enable_lora(module, name)
        self._lora_changed()

    def fuse_lora(self, components=None, lora_scale: float = 1.0, safe_fusing: bool = False,
                  adapter_names=None) -> None:
        """Fuse the adapters (all, or `adapter_names`) into the weights: zero run-time cost. `lora_scale`
        multiplies their scales (they stay at the product). `safe_fusing` is accepted: a LoRA with NaN or
        inf is refused when it is loaded."""
        module = self._lora_module("fuse_lora", components)
        names = list(lora.apply.adapters(module)) if adapter_names is None else _names(adapter_names)
        factor = lora.check_scale(lora_scale, "lora_scale")
        for name in names:
            a = lora.apply.get(module, name)
            if factor != 1.0:
                lora.set_lora_scale(module, name, a.scale * factor)
            lora.fuse_lora(module, name)
        self._lora_changed()

    def unfuse_lora(self, components=None) -> None:
        """Take every fused adapter back out of the weights (each stays loaded, unfused)."""
        lora.unfuse_lora(self._lora_module("unfuse_lora", components))
        self._lora_changed()

    def unload_lora_weights(self) -> None:
        """Remove every adapter: the weights return to the base (within fp32 rounding)."""
        lora.unload_lora(self._lora_module("unload_lora_weights"))
        self._lora_changed()

    def delete_adapters(self, adapter_names) -> None:
        module = self._lora_module("delete_adapters")
        for name in _names(adapter_names):
            lora.unload_lora(module, name)
        self._lora_changed()

    def disable_lora(self) -> None:
        """Switch every adapter off, keeping them loaded (`enable_lora` or `set_adapters` turns them on)."""
        self._switch(lora.disable_lora)

    def enable_lora(self) -> None:
        self._switch(lora.enable_lora)

    def get_active_adapters(self) -> list[str]:
        """Names of the enabled adapters, in load order."""
        module = self._lora_module("get_active_adapters")
        return [a.name for a in lora.apply.adapters(module).values() if a.enabled]

    def get_list_adapters(self) -> dict[str, list[str]]:
        """{"transformer": every loaded adapter's name}, diffusers' shape."""
        return {TRANSFORMER: list(lora.apply.adapters(self._lora_module("get_list_adapters")))}

    # ---------------------------------------------------------------- helpers

    def _switch(self, fn) -> None:
        module = self._lora_module(fn.__name__)
        for name in list(lora.apply.adapters(module)):
            fn(module, name)
        self._lora_changed()

    def _lora_module(self, what: str, components=None):
        """The eager denoiser the adapters go on; a compiled engine is refused with the fix."""
        import torch

        if components is not None and list(_names(components)) != [TRANSFORMER]:
            raise ConfigError(f"{what}: vdrt's LoRAs go on the denoiser only (components=['{TRANSFORMER}']); "
                              f"got {components!r}")
        module = getattr(self.engine, "module", None)
        if not isinstance(module, torch.nn.Module):
            backend = getattr(self.engine, "manifest", {}).get("backend", type(self.engine).__name__)
            raise ConfigError(f"{what}: this pipeline runs a compiled {backend} engine, whose weights are baked in; "
                              "LoRAs must be fused at build time (vdrt build MODEL --lora PATH[:SCALE]), or load the "
                              "model itself (not an engine) for hot-swappable adapters")
        return module

    def _lora_changed(self) -> None:
        """Captured CUDA graphs hold the old hooks and scales: drop them (re-captured on the next call)."""
        reset = getattr(self.engine, "reset_graphs", None)
        if reset is not None:
            reset()


def _names(names) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _weights(names: list[str], weights) -> list[float]:
    if weights is None or isinstance(weights, (int, float)) and not isinstance(weights, bool):
        weights = [1.0 if weights is None else weights] * len(names)
    weights = list(weights)
    if len(weights) != len(names):
        raise ConfigError(f"set_adapters: {len(names)} adapter names but {len(weights)} weights; give one per name")
    if any(isinstance(w, dict) for w in weights):
        raise ConfigError("set_adapters: per-block or per-component weights (dicts) are not supported; "
                          "give one number per adapter")
    return [lora.check_scale(1.0 if w is None else w, f"set_adapters weight for {n!r}")
            for n, w in zip(names, weights)]
