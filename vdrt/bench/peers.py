"""Peers for `vdrt bench --peers diffusers`: the same model as diffusers implements it, same weights.

Wan models get diffusers' `WanTransformer3DModel` built from our config (`config_to_diffusers`)
with our weights under diffusers' names, and the modules diffusers keeps in fp32 when it loads
with `torch_dtype` (`_keep_in_fp32_modules`) kept in fp32, as `from_pretrained` would.
"""
from __future__ import annotations

import torch

from vdrt.errors import ConfigError, require


def diffusers_peer(module: torch.nn.Module):
    """(diffusers module, call(x) -> prediction) holding `module`'s weights, dtype and device."""
    cfg = module.config
    if cfg.family != "wan":
        raise ConfigError(f"--peers diffusers covers the wan family (WanTransformer3DModel); this model is "
                          f"{cfg.family}")
    require("diffusers")
    from diffusers import WanTransformer3DModel

    from vdrt.models.wan_convert import config_to_diffusers, state_dict_to_diffusers

    p = next(module.parameters())
    with torch.device(p.device):
        dm = WanTransformer3DModel(**config_to_diffusers(cfg))
    dm = keep_fp32_modules(dm.to(p.dtype)).eval().requires_grad_(False)  # dtypes first: the copy keeps fp32 exact
    dm.load_state_dict(state_dict_to_diffusers(module.state_dict(), dm.state_dict().keys()), strict=True)

    def call(x):
        latents, t, ctx, extra = x
        hidden = torch.cat([latents, extra["cond"]], dim=1) if "cond" in extra else latents
        return dm(hidden_states=hidden, timestep=t, encoder_hidden_states=ctx,
                  encoder_hidden_states_image=extra.get("image_embeds"), return_dict=False)[0]
    return dm, call


def keep_fp32_modules(dm: torch.nn.Module) -> torch.nn.Module:
    """What diffusers' from_pretrained(torch_dtype=bf16) does: its _keep_in_fp32_modules stay fp32."""
    keep = set(getattr(dm, "_keep_in_fp32_modules", None) or [])
    for name, mod in dm.named_modules():
        if keep & set(name.split(".")):
            mod.float()
    return dm
