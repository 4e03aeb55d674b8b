"""Training scripts of the embedded default model `vdrt-tiny` (see export/tiny/README.md).

- `train`: the teacher `vdrt-tiny-teacher` (flow matching, all conditioning modes, CFG-ready);
- `distill`: the 4-step student `vdrt-tiny` (teacher ODE distillation at fixed timesteps,
  guidance baked in);
- `common`: architecture, data pool, conditioning masks, the resumable loop, card writing.

    python -m vdrt.export.tiny.train --out runs/tiny --steps 8000 --batch 64 --minutes 6.5 --device cuda --bf16
    python -m vdrt.export.tiny.distill --teacher runs/tiny/vdrt-tiny-teacher.json --out runs/tiny \
        --trajectories 8192 --steps 4000 --minutes 6.5 --guidance 4.0 --device cuda --bf16
"""
