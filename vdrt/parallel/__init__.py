"""Multi-GPU inference: Ulysses sequence parallelism and CFG parallelism on torch.distributed.

    vdrt generate "a fox" --model wan2.1-t2v-1.3b --gpus 4 -o fox.mp4     # 2 CFG x 2 Ulysses
    torchrun --nproc-per-node 4 -m vdrt generate "a fox" --model ... --gpus 4 -o fox.mp4

- `mesh`: the cfg_degree x ulysses_degree layout, its process groups and the checks (ConfigError);
- `comm`: all-to-all between sequence and heads, all-gather;
- `ulysses`: the sequence-parallel Wan forward (attention all-to-all, rope sliced per shard);
- `cfg`: the [cond; uncond] batch split over two rank groups;
- `engine`: `ParallelEngine`, the engine protocol over a Mesh;
- `launch`: N local processes through torch.distributed.run (the CLI's `--gpus N` entry is vdrt.cli.parallel).
See docs/parallel.md.
"""
from vdrt.parallel.engine import ParallelEngine
from vdrt.parallel.mesh import Layout, Mesh, check_gpus, check_heads, check_layout, check_sequence, choose_degrees
from vdrt.parallel.mesh import init_distributed

__all__ = ["Layout", "Mesh", "ParallelEngine", "check_gpus", "check_heads", "check_layout", "check_sequence",
           "choose_degrees", "init_distributed"]
