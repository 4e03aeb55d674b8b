"""Step policies: `vdrt.samplers.StepHook`s that the one sampling loop runs around each model call.

Step caching (TeaCache, MagCache, first-block cache: `skip` returns a reused output, `observe`
keeps the real ones) and per-step attention schedules (`wrap` returns `vdrt.ops.use(attention=...)`)
live here, one file per policy. The contract they build on is written in `vdrt/samplers/loop.py`;
a pipeline runs them through `pipe.hooks`.
"""
