"""Quality of the tiny models against ground truth: the oracle (vdrt.export.tiny.quality) as a benchmark.

    python benchmarks/quality.py --weights-dir runs/x --model vdrt-tiny-wan-teacher --model vdrt-tiny-wan \
        --clips 256 --baselines --compare --int4 --out q.json --sheet sheet.png

Every --model (repeatable) is a card `<name>.json` in --weights-dir (default: the embedded weight
folders), sampled in batches of --batch clips on the GPU when there is one; --steps / --guidance /
--shift / --sampler override the cards' defaults (`--model NAME@STEPS` sets one model's steps).
--save-results DIR keeps every evaluated model's scores and clips (`<model>.npz`); --results FILE
(repeatable) brings saved ones back, before this run's models, so models evaluated in separate runs
(or processes) are compared as if in one. Scored on --clips test clips at --frames x --height
x --width (each task: t2v, extend, interpolate; `--tasks` to choose).
--baselines adds the truth and the trivial generators; --compare reports every model against the
first (paired bootstrap CIs, fidelity); --int4 adds the first model with int4 weights, compared to it;
--window F adds the first model with temporal attention restricted to F frames (factorized models)
/ --window-tokens N with 3D attention restricted to N tokens (wan models), compared to it;
--ops OP=IMPL[,OP=IMPL] (repeatable) adds the first model with those vdrt.ops implementations forced
(e.g. linear=vdrt-fp8: on the CPU the kernels' quantization is emulated; `sparse=D` a density or
`sparse=FxHxW` a window in tiles for the sparse attentions), compared to it;
--engine DIR (repeatable) adds the first model run through a compiled engine directory (`vdrt build`
of the same card; its batch profile must hold --batch clips, twice that with CFG), compared to it;
--cache POLICY:T (repeatable) adds the first model under that step-cache policy (the model's kept
calibration, `vdrt calibrate MODEL --steps N`), compared to it, with its skipped fraction of row-steps;
--sheet writes a contact sheet (PNG) of every model's default clip ("a red circle bouncing", seed 0).
Rows: bench "quality", case "test[0:N] TxHxW", impl, the summary metrics, ms per clip, device,
commit, date, torch; plus "quality-compare" rows; written to --out (JSON) and printed as tables.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from common import meta

log = logging.getLogger("quality")
DEFAULT_PROMPT = "a red circle bouncing"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], help="card name (repeatable)")
    p.add_argument("--weights-dir", default=None, help="folder with the cards (default: embedded weight folders)")
    p.add_argument("--baselines", action="store_true")
    p.add_argument("--compare", action="store_true", help="every model against the first")
    p.add_argument("--int4", action="store_true", help="add the first model with int4 weights")
    p.add_argument("--window", type=int, default=None, help="add the first model with a frame window")
    p.add_argument("--window-tokens", type=int, default=None, help="add the first model with a token window")
    p.add_argument("--ops", action="append", default=[], help="OP=IMPL[,OP=IMPL]: add the first model with "
                   "those implementations forced (repeatable)")
    p.add_argument("--cache", action="append", default=[], help="POLICY:T: add the first model under that "
                   "step-cache policy (repeatable)")
    p.add_argument("--engine", action="append", default=[], help="DIR: add the first model run through this "
                   "engine directory (repeatable)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--shift", type=float, default=None)
    p.add_argument("--sampler", default=None)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--tasks", default="t2v,extend,interpolate")
    p.add_argument("--batch", type=int, default=64, help="clips per denoiser call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--sheet", default=None, help="PNG contact sheet of the default clip per model")
    p.add_argument("--out", default=None)
    p.add_argument("--save-results", default=None, help="folder to keep each evaluated model's scores and clips")
    p.add_argument("--results", action="append", default=[], help="a saved result (.npz) to include (repeatable)")
    return p.parse_args(argv)


def card_path(name: str, weights_dir) -> Path:
    from vdrt import embedded
    from vdrt.errors import ConfigError

    path = Path(weights_dir) / f"{name}.json" if weights_dir else embedded.card_path(name)
    if path is None or not path.is_file():
        raise ConfigError(f"no card {name!r}; pass --weights-dir with the folder the training scripts wrote")
    return path


def generator(spec: str, args, **kw):
    """The generator of `NAME` or `NAME@STEPS`."""
    from vdrt.export.tiny.quality.generate import CardGenerator

    name, _, steps = spec.partition("@")
    settings = {"num_steps": int(steps) if steps else args.steps, "guidance": args.guidance, "shift": args.shift,
                "sampler": args.sampler}
    return CardGenerator.from_card(card_path(name, args.weights_dir), device=args.device, batch_size=args.batch,
                                   **settings, **kw)


def save_result(result: dict, folder) -> Path:
    """scores (JSON) and clips (uint8 arrays) of one evaluated model, as `<folder>/<name>.npz` (no pickles)."""
    path = Path(folder) / (result["name"].replace("/", "_").replace(" ", "_") + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in result.items() if k != "outputs"}
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **{f"out_{k}": v for k, v in result["outputs"].items()})
    return path


def load_result(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        result = json.loads(str(z["meta"]))
        result["outputs"] = {k[4:]: z[k] for k in z.files if k.startswith("out_")}
    return result


def variants(args) -> list[tuple[str, object]]:
    from vdrt.export.tiny.quality.damage import int4_weights, register_window_attention

    out = []
    for name in args.model:
        g = generator(name, args)
        out.append((f"{g.name} {g.settings.describe()}", g))
    first = args.model[0] if args.model else None
    if first and args.int4:
        out.append((f"{first} int4 weights", generator(first, args, transform=int4_weights)))
    if first and args.window is not None:
        ops = register_window_attention(frames=args.window)
        out.append((f"{first} temporal window {args.window}", generator(first, args, ops=ops)))
    for spec in args.ops if first else []:
        out.append((f"{first} {spec}", generator(first, args, ops=parse_ops(spec))))
    if first and args.window_tokens is not None:
        ops = register_window_attention(tokens=args.window_tokens)
        out.append((f"{first} token window {args.window_tokens}", generator(first, args, ops=ops)))
    for path in args.engine if first else []:
        out.append((f"{first} engine {Path(path).name}", generator(first, args, transform=engine_of(path))))
    for spec in args.cache if first else []:
        out.append((f"{first} cache {spec}", cached(generator(first, args), first, spec)))
    return out


def cached(gen, name: str, spec: str):
    """`gen` with its denoiser under the step-cache policy `spec` (an embedded model's kept calibration, if any)."""
    from cache_quality import Stepped

    from vdrt import embedded
    from vdrt.bench.calibrate import calibration_for
    from vdrt.samplers.policies.cachespec import parse

    card = name.partition("@")[0]
    cal = calibration_for(card) if embedded.card_path(card) is not None else None
    log.info("cache %s on %s: %s", spec, card, "its kept calibration" if cal else "no calibration")
    policy = parse(spec).build(cal)
    gen.denoiser = Stepped(gen.denoiser, policy, gen.settings.num_steps)
    return gen


class EngineDenoiser(torch.nn.Module):
    """A compiled engine in the eager denoiser's place: `(x, t, ctx, cond=)` and `.config`."""

    def __init__(self, engine):
        super().__init__()
        self.engine = engine

    @property
    def config(self):
        return self.engine.config

    def forward(self, x, t, ctx, cond=None):  # (B, C, T, H, W) -> (B, C, T, H, W)
        return self.engine(x, t, ctx, **({} if cond is None else {"cond": cond})).float()


def engine_of(path):
    """A `transform` that replaces the loaded denoiser with the engine at `path`."""
    import vdrt

    return lambda den: EngineDenoiser(vdrt.load_engine(path, device="cpu"))


def skipped(gen) -> float | None:
    """The fraction of row-steps a cached generator skipped (None: no cache policy)."""
    return gen.denoiser.skipped_fraction() if hasattr(gen.denoiser, "skipped_fraction") else None


def parse_ops(spec: str) -> dict[str, str]:
    """"linear=vdrt-fp8,attention=vdrt-int8" -> {op: implementation}, checked against the registry;
    "sparse=0.25" / "sparse=1x1x1" -> {"sparse": SparseConfig(density= / window=)}."""
    from vdrt import ops
    from vdrt.errors import ConfigError

    out = {}
    for part in spec.split(","):
        op, _, impl = part.partition("=")
        if op == "sparse":
            out["sparse"] = sparse_config(impl)
            continue
        if op not in ops.OPS or impl not in ops.available(op):
            raise ConfigError(f"--ops {part!r}: need OP=IMPL with OP in {list(ops.OPS)} and IMPL one of "
                              f"ops.available(OP) (e.g. linear=vdrt-fp8)")
        out[op] = impl
    return out


def sparse_config(text: str):
    """"0.25" -> SparseConfig(density=0.25); "1x1x1" -> SparseConfig(window=(1, 1, 1)) (tiles)."""
    from vdrt.errors import ConfigError
    from vdrt.sparse import SparseConfig

    try:
        if "x" in text:
            return SparseConfig(window=tuple(int(v) for v in text.split("x")))
        return SparseConfig(density=float(text))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--ops sparse={text!r}: need a density in (0, 1] or a window FxHxW in tiles ({e})") from e


def run(args) -> tuple[list[dict], list[dict]]:
    from vdrt.export.tiny.data.world import Geometry
    from vdrt.export.tiny.quality import oracle
    from vdrt.export.tiny.quality.compare import compare, report_table

    geo = Geometry(args.frames, args.height, args.width)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    models = [load_result(p) for p in args.results]
    for impl, gen in variants(args):
        log.info("quality: %s on %d test clips %s", impl, args.clips, geo.shape)
        models.append(oracle.evaluate(gen, args.clips, args.seed, geo, tasks=tasks, name=impl))
        if skipped(gen) is not None:
            models[-1]["skipped"] = skipped(gen)
        if args.save_results:
            log.info("quality: saved %s", save_result(models[-1], args.save_results))
    base = oracle.baselines(args.clips, geo) if args.baselines else []
    print(oracle.table(models + base))
    reports = []
    for cand in models[1:] if (args.compare or len(models) > len(args.model) + len(args.results)) else []:
        reports.append(compare(models[0], cand))
        print("\n" + report_table(reports[-1]))
    return models + base, reports


def rows(args, results, reports) -> list[dict]:
    from vdrt.export.tiny.quality.oracle import row

    case = f"test[0:{args.clips}] {args.frames}x{args.height}x{args.width}"
    out = [{"bench": "quality", "case": case, "impl": r["name"], **row(r), **meta()} for r in results]
    for rep in reports:
        extra = {k: r[k] for r in results if r["name"] == rep["candidate"] for k in ("skipped", "ms_per_clip") if k in r}
        out.append({"bench": "quality-compare", "case": case, "impl": rep["candidate"], **_json_safe(rep), **extra,
                    **meta()})
    return out


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return "inf" if isinstance(x, float) and np.isinf(x) else x


def contact_sheet(args, path: str) -> None:
    """One row per model: the 17 frames of its default clip, seed 0, scaled x2."""
    from PIL import Image

    strips = []
    for impl, gen in variants(args):
        clip = gen([DEFAULT_PROMPT], "t2v", seed=0)[0]  # (T, H, W, 3)
        strips.append(np.concatenate(list(clip), axis=1))
    sheet = np.concatenate(strips, axis=0)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2), Image.NEAREST).save(path)
    log.info("contact sheet: %s (rows: %s)", path, [i for i, _ in variants(args)])


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    if not (args.model or args.baselines or args.results):
        args.model = ["vdrt-tiny"]
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results, reports = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(rows(args, results, reports), indent=1))
    if args.sheet:
        contact_sheet(args, args.sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
