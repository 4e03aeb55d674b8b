"""Quality of the tiny models against ground truth: the oracle (vdrt.export.tiny.quality.oracle) as a benchmark.

    python benchmarks/quality.py --weights-dir runs/tiny --model vdrt-tiny-teacher --steps 50 --guidance 4 \
        --model vdrt-tiny --random --baselines --clips 256 --out benchmarks/results/h100/quality.json

Every --model (repeatable) is a card `<name>.json` in --weights-dir (default: the embedded weight
folders), sampled in batches of --batch clips per denoiser call on the GPU when there is one;
--steps / --guidance / --shift / --sampler override the card's defaults for every model given.
--random adds the architecture of the first model (or the default vdrt-tiny config) with random
weights; --baselines adds the truth (metric ceilings) and "repeat the last known frame".
--via-pipeline generates through `vdrt.Pipeline.from_pretrained(name)` (one clip per call;
needs vdrt.embedded_pipeline) instead of the batched card generator.

Rows: bench "quality", case "test[0:N]", impl, the oracle's metrics, ms_per_clip (generation
time per clip, both tasks), device, commit, date, torch; written to --out and printed.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch
from common import meta, write_rows

log = logging.getLogger("quality")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], help="card name (repeatable)")
    p.add_argument("--weights-dir", default=None, help="folder with the cards (default: embedded weight folders)")
    p.add_argument("--random", action="store_true", help="add a random-init model of the same architecture")
    p.add_argument("--baselines", action="store_true", help="add the truth and repeat-last-frame rows")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--shift", type=float, default=None)
    p.add_argument("--sampler", default=None)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--batch", type=int, default=64, help="clips per denoiser call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--via-pipeline", action="store_true")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def card_path(name: str, weights_dir) -> Path:
    from vdrt.bench import find_card
    from vdrt.errors import ConfigError

    path = find_card(name, weights_dir)
    if path is None:
        raise ConfigError(f"no card {name!r}; pass --weights-dir with the folder the training scripts wrote")
    return path


def settings(args) -> dict:
    return {"num_steps": args.steps, "guidance": args.guidance, "shift": args.shift, "sampler": args.sampler}


def card_generator(name: str, args, random_init: bool = False):
    from vdrt.export.tiny.quality.oracle import CardGenerator

    return CardGenerator.from_card(card_path(name, args.weights_dir), device=args.device, random_init=random_init,
                                   batch_size=args.batch, **settings(args))


def random_generator(args):
    """Random weights: the first model's architecture, else the default vdrt-tiny sections."""
    from vdrt.export.tiny.common import sections

    from vdrt.export.tiny.quality.oracle import CardGenerator, SampleSettings, build_models

    if args.model:
        return card_generator(args.model[0], args, random_init=True)
    den, text = build_models(*sections())
    s = SampleSettings.from_defaults({}, **settings(args))
    return CardGenerator(den, text, s, device=args.device, batch_size=args.batch, name="random init")


def pipeline_generator(name: str, args):
    import vdrt
    from vdrt.export.tiny.quality.oracle import pipeline_generator as wrap

    if args.weights_dir:
        os.environ["VDRT_WEIGHTS_DIR"] = str(Path(args.weights_dir).resolve())
    pipe = vdrt.Pipeline.from_pretrained(name, device=args.device)
    kw = {k: v for k, v in {"num_steps": args.steps, "guidance": args.guidance, "shift": args.shift,
                            "sampler": args.sampler}.items() if v is not None}
    return f"{name} (vdrt.Pipeline)", wrap(pipe, **kw)


def generators(args) -> list[tuple[str, object]]:
    from vdrt.export.tiny.quality import oracle

    out = []
    for name in args.model:
        if args.via_pipeline:
            out.append(pipeline_generator(name, args))
        else:
            g = card_generator(name, args)
            out.append((f"{g.name} {g.settings.describe()}", g))
    if args.random:
        g = random_generator(args)
        out.append((f"{g.name} {g.settings.describe()}", g))
    if args.baselines:
        out += [("truth", oracle.reference_generator(args.clips)), ("repeat last frame", oracle.repeat_last_generator)]
    return out


def run(args) -> list[dict]:
    from vdrt.export.tiny.quality.oracle import evaluate

    rows = []
    for impl, gen in generators(args):
        log.info("quality: %s on %d test clips", impl, args.clips)
        result = evaluate(gen, n_clips=args.clips, seed=args.seed)
        rows.append({"bench": "quality", "case": f"test[0:{args.clips}]", "impl": impl, **result, **meta()})
    return rows


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not (args.model or args.random or args.baselines):
        args.model = ["vdrt-tiny"]
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    write_rows(run(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
