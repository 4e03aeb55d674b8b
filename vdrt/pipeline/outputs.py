"""The call's result in the format asked for: vdrt's `Video`, or diffusers' output types.

| output_type     | result (B = prompts x num_videos)                                             |
| "video" default | a `vdrt.Video` (uint8 (T, H, W, 3) frames); a list of them when B > 1          |
| "np"            | float32 (B, T, H, W, 3) in [0, 1]: exactly the Video's uint8 frames / 255      |
| "pt"            | float32 (B, T, 3, H, W) in [0, 1], as diffusers' video processor gives it     |
| "pil"           | B lists of T PIL images                                                        |
| "latent"        | the final latents (B, C, F, h, w), not decoded                                 |

With an explicit output_type the result is diffusers-shaped: `PipelineOutput(frames=...)`, or
the tuple `(frames,)` with `return_dict=False`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch


@dataclasses.dataclass
class PipelineOutput:
    """diffusers' pipeline output: `.frames` in the output type asked for."""

    frames: object


def package(latents: list[torch.Tensor], req, call, codec):
    """Latents (1, C, F, h, w) per video -> the output `req.output_type` asks for."""
    from vdrt.io import Video, frames_from_float

    if req.output_type == "latent":
        frames = torch.cat(latents)
    else:
        videos = [Video(frames_from_float(codec.decode(x[0]).float().cpu()), fps=req.fps) for x in latents]
        if req.output_type == "video":
            return videos[0] if len(videos) == 1 else videos
        frames = convert(videos, req.output_type)
    if call.output_type_given and not call.return_dict:
        return (frames,)
    return PipelineOutput(frames) if call.output_type_given else frames


def convert(videos: list, output_type: str):
    """Videos -> "np" (B, T, H, W, 3) float in [0, 1], "pt" (B, T, 3, H, W), or "pil" lists of images."""
    if output_type == "pil":
        from PIL import Image

        return [[Image.fromarray(f) for f in v.frames] for v in videos]
    arr = np.stack([v.frames for v in videos]).astype(np.float32) / np.float32(255)
    if output_type == "np":
        return arr
    return torch.from_numpy(arr).permute(0, 1, 4, 2, 3).contiguous()
