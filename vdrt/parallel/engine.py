"""`ParallelEngine`: an engine that runs one denoiser call over a Mesh (CFG x Ulysses), same protocol.

    env = init_distributed("cuda")                     # every rank
    mesh = Mesh.create(cfg_degree=2, ulysses_degree=2)  # 4 ranks
    pipe = Pipeline.from_pretrained("wan2.1-t2v-1.3b", device=env.device)
    pipe.engine = ParallelEngine(pipe.engine, mesh)
    video = pipe(prompt, seed=0)                       # every rank, same arguments; rank 0 saves

Every rank gets the full prediction, so every rank runs the same sampler loop with the same seeds.
Ulysses (ulysses_degree > 1) needs a `wan` model run by the torch engine (it reuses the module's
submodules); CFG parallelism works with any engine, since it only splits the batch.
"""
from __future__ import annotations

import logging

import torch

from vdrt.errors import ConfigError
from vdrt.parallel.cfg import cfg_parallel
from vdrt.parallel.mesh import Mesh, check_heads
from vdrt.parallel.ulysses import wan_forward

log = logging.getLogger(__name__)


class ParallelEngine:
    def __init__(self, engine, mesh: Mesh):
        if isinstance(engine, torch.nn.Module):
            from vdrt.engines.torch import TorchEngine

            engine = TorchEngine(engine)
        self.engine, self.mesh = engine, mesh
        if mesh.ulysses_degree > 1:
            self._check_ulysses()
        log.info("parallel engine: %s", mesh.describe())

    def _check_ulysses(self) -> None:
        from vdrt.engines.torch import TorchEngine

        family = self.config.family
        if not isinstance(self.engine, TorchEngine) or family != "wan":
            raise ConfigError(f"ulysses degree {self.mesh.ulysses_degree} needs a wan model on the torch engine; got "
                              f"a {family} model on {type(self.engine).__name__}: use CFG parallelism only "
                              "(2 processes, guidance != 1)")
        check_heads(self.config.num_heads, self.mesh.ulysses_degree)
        if self.engine.cuda_graphs:
            log.warning("CUDA graphs are not used under Ulysses sequence parallelism (eager all-to-all)")

    @property
    def module(self):
        """The eager module (Ulysses reuses its submodules); None for compiled engines."""
        from vdrt.engines.torch import TorchEngine

        return self.engine.module if isinstance(self.engine, TorchEngine) else None

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def dtype(self) -> torch.dtype:
        return self.engine.dtype

    @property
    def config(self):
        return self.engine.config

    @property
    def manifest(self) -> dict:
        m = self.mesh
        return {**self.engine.manifest, "parallel": {"world_size": m.layout.world_size, "cfg_degree": m.cfg_degree,
                                                     "ulysses_degree": m.ulysses_degree}}

    @torch.inference_mode()
    def __call__(self, latents, timestep, context, **cond) -> torch.Tensor:
        """(B, C, F, H, W), (B,), (B, T, text_dim), **cond -> (B, C_out, F, H, W), the same on every rank."""
        return cfg_parallel(self._branch, self.mesh, latents, timestep, context, **cond)

    def _branch(self, latents, timestep, context, **cond) -> torch.Tensor:
        """One CFG group's share, its tokens split over the Ulysses group."""
        if self.mesh.ulysses_degree == 1:
            return self.engine(latents, timestep, context, **cond)
        return wan_forward(self.module, self.mesh.ulysses_group, latents, timestep, context, **cond)
