"""Image conditioning encoders: Wan I2V's CLIP vision tower from a diffusers directory (lazy)."""
from __future__ import annotations

import torch

from vdrt.errors import require


class ClipImageEncoder:
    """(3, H, W) in [-1, 1] -> (1, 257, 1280): CLIP's penultimate hidden states, as Wan I2V uses them."""

    def __init__(self, root, device="cpu"):
        require("transformers", "diffusers")
        from transformers import CLIPImageProcessor, CLIPVisionModel

        self.model = CLIPVisionModel.from_pretrained(str(root / "image_encoder")).to(device).eval()
        self.processor = CLIPImageProcessor.from_pretrained(str(root / "image_processor"))
        self.device = device

    @torch.no_grad()
    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        pixels = [((im.permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().cpu().numpy() for im in images]
        inputs = self.processor(images=pixels, return_tensors="pt").to(self.device)
        out = self.model(**inputs, output_hidden_states=True)
        return out.hidden_states[-2]
