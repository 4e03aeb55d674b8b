"""What the vdrt-tiny teacher and student scripts share.

- the architecture (`MODEL_CONFIG`, `TEXT_CONFIG`, `sections`) and models built from a card;
- the procedural data on the training device (`render_pool`, `tokenize`, `clips_to_model`);
- conditioning-mask sampling (`sample_keep`): one model serves t2v, i2v, extend, interpolate,
  inpaint and outpaint through `cond = [x0 * keep, keep]` (the layout `vdrt.native` feeds);
- the optimisation loop (`Loop`): AdamW, warmup + cosine LR, EMA, a time budget that fits the LR
  horizon to the measured speed, running-mean loss logs and `loss_curve.json`, and exactly
  resumable checkpoints (`save_checkpoint` / `load_checkpoint`: safetensors files <= 15 MB each);
- the model card (`write_card`): `<name>.json` + `<name>.safetensors` (fp16).
Alphabet: N clips, B batch, F frames, H, W pixels.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vdrt.errors import CheckpointError, ConfigError, SamplingError, VdrtError
from vdrt.fsutil import atomic_path, sha256_file

log = logging.getLogger(__name__)

MODEL_CONFIG = dict(in_channels=3, out_channels=3, text_dim=128, patch_size=(1, 4, 4), dim=160, num_heads=5,
                    num_layers=4, max_frames=17, sample_size=64, cond_channels=4, text_len=16)
TEXT_CONFIG = dict(max_len=16, dim=128, layers=2, heads=4)
# t2v 40%; the rest split over the modes with known pixels (extend most: it is what forecasting uses).
MODE_PROBS = {"t2v": 0.40, "i2v": 0.12, "extend": 0.16, "interpolate": 0.08, "inpaint": 0.12, "outpaint": 0.12}
MAX_FILE_BYTES = 15_000_000  # every checkpoint shard and every card's weights file stays below this
CLIP = (17, 64, 64)


# ---------------------------------------------------------------- architecture


def sections(config_overrides: dict | None = None, text_overrides: dict | None = None) -> tuple[dict, dict]:
    """The card's `config` (FactorizedConfig.to_dict) and `text` sections, with overrides applied."""
    from vdrt.export.tiny.data.captions import VOCAB
    from vdrt.models.factorized import FactorizedConfig

    text = {"vocab": list(VOCAB), **TEXT_CONFIG, **(text_overrides or {})}
    over = dict(config_overrides or {})
    over.setdefault("text_dim", text["dim"])
    over.setdefault("text_len", text["max_len"])
    return FactorizedConfig(**{**MODEL_CONFIG, **over}).to_dict(), text


def named_parameters(den, encoder) -> dict[str, torch.nn.Parameter]:
    """Every trained tensor under its card name (`denoiser.<n>`, `text.<n>`); refuses modules with buffers."""
    out = {}
    for prefix, module in (("denoiser", den), ("text", encoder)):
        params = dict(module.named_parameters())
        if set(params) != set(module.state_dict()):
            raise ConfigError(f"{prefix} has persistent buffers; the tiny-model scripts save parameters only")
        out.update({f"{prefix}.{k}": p for k, p in params.items()})
    return out


# ---------------------------------------------------------------- data


def _render_chunk(path: str, n_total: int, split: str, start: int, offset: int, n: int) -> list[str]:
    from vdrt.export.tiny.data.procedural import batch

    pool = np.memmap(path, np.uint8, "r+", shape=(n_total, *CLIP, 3))
    _, texts = batch(split, start + offset, n, out=pool[offset: offset + n])
    pool.flush()
    return texts


def render_pool(split: str, start: int, n: int, device, workers: int = 0, chunk: int = 1000):
    """Clips start..start+n-1 of `split` as uint8 (N, F, H, W, 3) on `device`, and their captions.

    With workers > 1, processes render chunks into a memory-mapped scratch file (not /dev/shm,
    which containers often cap at 64 MB), copied to the device chunk by chunk.
    """
    from vdrt.export.tiny.data.procedural import batch

    t0 = time.perf_counter()
    if workers <= 1 or n <= chunk:
        clips, texts = batch(split, start, n)
        pool = torch.from_numpy(clips).to(device)
    else:
        pool, texts = _render_parallel(split, start, n, device, workers, chunk)
    log.info("data: %d %s clips rendered in %.1f s (%.2f GB on %s)", n, split, time.perf_counter() - t0,
             pool.numel() / 1e9, device)
    return pool, texts


def _render_parallel(split, start, n, device, workers, chunk):
    import multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="vdrt-pool-") as tmp:
        path = os.path.join(tmp, "pool.u8")
        np.memmap(path, np.uint8, "w+", shape=(n, *CLIP, 3)).flush()
        jobs = [(path, n, split, start, i, min(chunk, n - i)) for i in range(0, n, chunk)]
        with mp.get_context("fork").Pool(workers) as procs:
            texts = [t for part in procs.starmap(_render_chunk, jobs) for t in part]
        mm = np.memmap(path, np.uint8, "r", shape=(n, *CLIP, 3))
        pool = torch.empty((n, *CLIP, 3), dtype=torch.uint8, device=device)
        for i in range(0, n, 4 * chunk):
            pool[i: i + 4 * chunk] = torch.from_numpy(np.array(mm[i: i + 4 * chunk])).to(device)
        del mm
    return pool, texts


def tokenize(tokenizer, texts: list[str], max_len: int, device):
    """Captions -> ids (N, L) int64 and mask (N, L) bool on `device`."""
    ids, mask = tokenizer.encode(texts, max_len=max_len)
    return ids.to(device), mask.to(device)


def clips_to_model(clips: torch.Tensor) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> float32 (B, 3, F, H, W) in [-1, 1] (as vdrt.export.tiny.data.procedural.to_float)."""
    return clips.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


# ---------------------------------------------------------------- conditioning masks


def sample_keep(n: int, gen: torch.Generator, device, probs: dict = MODE_PROBS) -> tuple[torch.Tensor, torch.Tensor]:
    """Random conditioning masks: keep (N, 1, F, H, W) float (1 = known), mode index (N,) into `probs`.

    t2v: nothing known; i2v: frame 0; extend: the first k frames, k uniform in 1..8; interpolate:
    first and last frames; inpaint: all but one rectangle (8..40 px a side) on every frame;
    outpaint: a central box, borders 4..20 px on each side (the pipeline's default is 16).
    Every sample draws the same 6 uniforms, so the random stream does not depend on the modes.
    """
    f, h, w = CLIP
    u = torch.rand(n, 6, generator=gen, device=device)
    cum = torch.tensor(np.cumsum(list(probs.values())), dtype=torch.float32, device=device)
    mode = torch.searchsorted(cum, u[:, 0].contiguous(), right=True).clamp(max=len(probs) - 1)
    names = list(probs)
    is_mode = {m: (mode == names.index(m)) if m in names else torch.zeros_like(mode, dtype=torch.bool)
               for m in MODE_PROBS}
    t = torch.arange(f, device=device)[None]  # (1, F)
    k = 1 + (u[:, 1] * 8).long().clamp(max=7)  # (N,) 1..8
    frames = (is_mode["i2v"][:, None] & (t == 0)) | (is_mode["extend"][:, None] & (t < k[:, None])) \
        | (is_mode["interpolate"][:, None] & ((t == 0) | (t == f - 1)))  # (N, F)
    spatial = _rect_keep(u[:, 2:], h, w, is_mode["inpaint"], is_mode["outpaint"])  # (N, H, W)
    keep = frames[:, :, None, None] | spatial[:, None]  # (N, F, H, W)
    return keep[:, None].float(), mode


def _rect_keep(u: torch.Tensor, h: int, w: int, inpaint: torch.Tensor, outpaint: torch.Tensor) -> torch.Tensor:
    """(N, 4) uniforms -> (N, H, W) bool: outside a rectangle (inpaint) or inside a border (outpaint)."""
    yy = torch.arange(h, device=u.device)[None, :, None]
    xx = torch.arange(w, device=u.device)[None, None, :]
    rh, rw = 8 + (u[:, 0] * 33).long(), 8 + (u[:, 1] * 33).long()  # 8..40
    y0, x0 = (u[:, 2] * (h - rh + 1)).long(), (u[:, 3] * (w - rw + 1)).long()
    c = lambda v: v[:, None, None]  # noqa: E731  (N,) -> (N, 1, 1)
    hole = (yy >= c(y0)) & (yy < c(y0 + rh)) & (xx >= c(x0)) & (xx < c(x0 + rw))
    top, bottom, left, right = (4 + (u[:, i] * 17).long() for i in range(4))  # 4..20
    box = (yy >= c(top)) & (yy < h - c(bottom)) & (xx >= c(left)) & (xx < w - c(right))
    return (c(inpaint) & ~hole) | (c(outpaint) & box)


# ---------------------------------------------------------------- checkpoints


def _shards(tensors: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    out, cur, size = [], {}, 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        if n > limit:
            raise CheckpointError(f"tensor {name} ({n / 1e6:.1f} MB) exceeds the {limit / 1e6:.0f} MB file limit")
        if cur and size + n > limit:
            out.append(cur)
            cur, size = {}, 0
        cur[name], size = t, size + n
    return out + [cur] if cur or not out else out


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp))


def _write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def save_checkpoint(out_dir, step: int, groups: dict[str, dict[str, torch.Tensor]], meta: dict,
                    limit: int = MAX_FILE_BYTES) -> Path:
    """Write ckpt/step-NNNNNNN/<group>-<k>.safetensors + state.json, then ckpt/latest.json (atomically,
    last), then delete older step folders. A crash mid-way leaves the previous checkpoint valid."""
    root = Path(out_dir) / "ckpt"
    d = root / f"step-{step:07d}"
    if d.exists():
        shutil.rmtree(d)
    files = {}
    for group, tensors in groups.items():
        files[group] = []
        for k, shard in enumerate(_shards(tensors, limit)):
            _save_tensors(d / f"{group}-{k:02d}.safetensors", shard)
            files[group].append(f"{group}-{k:02d}.safetensors")
    _write_json(d / "state.json", {**meta, "step": step, "files": files})
    _write_json(root / "latest.json", {"step": step, "dir": d.name})
    for old in root.glob("step-*"):
        if old != d:
            shutil.rmtree(old)
    return d


def latest_meta(out_dir) -> dict | None:
    """state.json of the latest checkpoint in out_dir (no tensors read), or None when there is none."""
    latest = Path(out_dir) / "ckpt" / "latest.json"
    if not latest.is_file():
        return None
    try:
        return json.loads((latest.parent / json.loads(latest.read_text())["dir"] / "state.json").read_text())
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"checkpoint {latest} is unreadable ({e}); delete {latest.parent} to start over") from e


def load_checkpoint(out_dir) -> tuple[dict[str, dict[str, torch.Tensor]], dict] | None:
    """(groups, meta) of the latest checkpoint in out_dir, or None when there is none."""
    from vdrt.checkpoint import read_safetensors

    meta = latest_meta(out_dir)
    if meta is None:
        return None
    d = Path(out_dir) / "ckpt" / f"step-{meta['step']:07d}"
    groups = {g: {k: v for f in names for k, v in read_safetensors(d / f).items()} for g, names in meta["files"].items()}
    return groups, meta


# ---------------------------------------------------------------- time budget and LR


class Budget:
    """Wall-clock budget from construction; `left()` keeps `reserve_s` for the final checkpoint and card."""

    def __init__(self, minutes: float | None, reserve_s: float = 15.0):
        self.t0, self.total = time.monotonic(), None if minutes is None else 60.0 * minutes
        self.reserve = reserve_s

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return math.inf if self.total is None else self.total - self.reserve - self.elapsed()

    def out(self) -> bool:
        return self.left() <= 0


def lr_at(step: int, base: float, warmup: int, horizon: int, final: float = 0.1) -> float:
    """Linear warmup over `warmup` steps, then cosine from base to final * base at `horizon`."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, horizon - warmup))
    return base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * p)))


# ---------------------------------------------------------------- the loop


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    steps: int  # the most optimizer steps (the LR horizon, unless the time budget fits a shorter one)
    lr: float
    warmup: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    ckpt_every: int = 500
    log_every: int = 50
    fit_after: int = 10  # steps before timing (allocator and kernel warm-up)
    fit_steps: int = 20  # steps timed to fit the horizon to the budget; fit_after + fit_steps <= warmup
    stop_at: int | None = None  # stop after this step as if the budget ran out (tests, staged runs)


class Loop:
    """AdamW + EMA over named parameters; `run(loss_fn)` steps until the horizon or the budget.

    Resuming restores parameters, EMA, optimizer moments, step, horizon, the training
    generator's state and the loss log, so the next step is bit-identical to an uninterrupted run.
    """

    def __init__(self, out_dir, params: dict[str, torch.nn.Parameter], cfg: LoopConfig, gen: torch.Generator,
                 budget: Budget, meta: dict | None = None):
        self.out, self.params, self.cfg, self.gen, self.budget = Path(out_dir), params, cfg, gen, budget
        self.opt = torch.optim.AdamW(list(params.values()), lr=cfg.lr, betas=(0.9, 0.99),
                                     weight_decay=cfg.weight_decay)
        self.ema = {k: p.detach().clone().float() for k, p in params.items()}
        self.step, self.horizon, self.curve, self.wall_before = 0, None, [], 0.0
        self.meta = dict(meta or {})
        self._acc, self._n, self._last, self._saved = None, 0, (0, time.monotonic()), None

    # --- state -----------------------------------------------------------------
    def _opt_tensors(self) -> dict[str, torch.Tensor]:
        names = list(self.params)
        return {f"{names[i]}/{k}": v for i, st in self.opt.state_dict()["state"].items() for k, v in st.items()}

    def save(self) -> None:
        groups = {"model": {k: p.detach() for k, p in self.params.items()}, "ema": self.ema,
                  "opt": self._opt_tensors(), "rng": {"generator": self.gen.get_state()}}
        meta = {"extra": self.meta, "horizon": self.horizon, "wall_seconds": self.wall_seconds(), "curve": self.curve,
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.opt.param_groups],
                "acc": [None if self._acc is None else float(self._acc), self._n]}
        save_checkpoint(self.out, self.step, groups, meta)
        self._saved = self.step
        _write_json(self.out / "loss_curve.json", self.curve)

    def resume(self) -> bool:
        """Load the latest checkpoint of out_dir; False when there is none."""
        got = load_checkpoint(self.out)
        if got is None:
            return False
        groups, meta = got
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(groups["model"][k])
                self.ema[k].copy_(groups["ema"][k])
        self._load_opt(groups["opt"], meta["param_groups"])
        self.gen.set_state(groups["rng"]["generator"])
        self.step, self.horizon, self.curve = meta["step"], meta["horizon"], meta["curve"]
        self.wall_before, self.meta = meta["wall_seconds"], {**self.meta, **meta.get("extra", {})}
        acc, self._n = meta["acc"]
        self._acc = None if acc is None else torch.tensor(acc, dtype=torch.float64)
        self._last = (self.step, time.monotonic())
        log.info("resumed at step %d (horizon %s) from %s", self.step, self.horizon, self.out / "ckpt")
        return True

    def _load_opt(self, tensors: dict, param_groups: list[dict]) -> None:
        names = list(self.params)
        state: dict[int, dict] = {}
        for key, v in tensors.items():
            name, field = key.rsplit("/", 1)
            state.setdefault(names.index(name), {})[field] = v
        groups = [{**g, "params": list(range(len(names)))} for g in param_groups]
        self.opt.load_state_dict({"state": state, "param_groups": groups})

    def wall_seconds(self) -> float:
        return self.wall_before + self.budget.elapsed()

    def ema_state(self) -> dict[str, torch.Tensor]:
        return dict(self.ema)

    # --- stepping ----------------------------------------------------------------
    def _one(self, loss_fn) -> None:
        c = self.cfg
        lr = lr_at(self.step, c.lr, c.warmup, self.horizon or c.steps)
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss = loss_fn(self.step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.params.values()), c.grad_clip)
        self.opt.step()
        d = min(c.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(list(self.ema.values()), [p.detach().float() for p in self.params.values()], 1 - d)
        self.step += 1
        self._acc = loss.detach().double() if self._acc is None else self._acc + loss.detach().double()
        self._n += 1

    def run(self, loss_fn) -> bool:
        """Step until the horizon (True) or until the budget / stop_at ends this session (False)."""
        local, t_fit = 0, None
        if self.horizon is None and self.budget.total is None:
            self.horizon = self.cfg.steps
        while self.step < (self.horizon or self.cfg.steps):
            if self.budget.out() or (self.cfg.stop_at is not None and self.step >= self.cfg.stop_at):
                break
            self._one(loss_fn)
            local += 1
            t_fit = self._maybe_fit(local, t_fit)
            if self.step % self.cfg.log_every == 0:
                self._log()
            if self.step % self.cfg.ckpt_every == 0:
                self.save()
        done = self.step >= (self.horizon or self.cfg.steps)
        if self._n:
            self._log()
        if self._saved != self.step:
            self.save()
        return done

    def _maybe_fit(self, local: int, t_fit):
        """Fix the LR horizon from the measured speed: min(steps, what fits in the budget left)."""
        c = self.cfg
        if self.horizon is not None or local < c.fit_after:
            return t_fit
        sync(self.gen.device)
        now = time.monotonic()
        if local == c.fit_after:
            return now
        if local < c.fit_after + c.fit_steps:
            return t_fit
        rate = c.fit_steps / (now - t_fit)
        fits = self.step + int(0.97 * self.budget.left() * rate)
        self.horizon = max(self.step + 1, min(c.steps, fits))
        log.info("speed %.2f steps/s: LR horizon %d steps (asked %d, the budget fits %d)", rate, self.horizon,
                 c.steps, fits)
        return t_fit

    def _log(self) -> None:
        loss = float(self._acc) / self._n
        if not math.isfinite(loss):
            raise SamplingError(f"training loss is {loss} at step {self.step}; lower --lr or check the data")
        step0, t0 = self._last
        now = time.monotonic()
        rate = (self.step - step0) / max(now - t0, 1e-9)
        self.curve.append({"step": self.step, "loss": loss, "elapsed": round(self.wall_seconds(), 2)})
        log.info("step %d/%s loss %.5f lr %.2e %.2f steps/s", self.step, self.horizon or self.cfg.steps, loss,
                 self.opt.param_groups[0]["lr"], rate)
        self._acc, self._n, self._last = None, 0, (self.step, now)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- cards and run info


def write_card(out_dir, name: str, state: dict[str, torch.Tensor], config: dict, text: dict, defaults: dict,
               trained: dict) -> Path:
    """Write <name>.safetensors (fp16) and then <name>.json (with its sha256), each atomically."""
    out = Path(out_dir)
    weights = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in state.items()}
    bad = [k for k, v in weights.items() if not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{name}: tensors {bad[:4]} are not finite in fp16; the training diverged")
    size = sum(v.numel() * 2 for v in weights.values())
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{name}: weights are {size / 1e6:.1f} MB, over the {MAX_FILE_BYTES / 1e6:.0f} MB "
                              "limit of a shipped model; shrink dim or num_layers")
    _save_tensors(out / f"{name}.safetensors", weights)
    card = {"name": name, "weights": f"{name}.safetensors", "sha256": sha256_file(out / f"{name}.safetensors"),
            "config": config, "text": text, "defaults": defaults, "trained": trained}
    _write_json(out / f"{name}.json", card)
    log.info("wrote %s (%.1f MB weights)", out / f"{name}.json", size / 1e6)
    return out / f"{name}.json"


def commit() -> str:
    if os.environ.get("VDRT_COMMIT"):
        return os.environ["VDRT_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_info(device, script: str, argv) -> dict:
    """Where and how a card was made: command, date, device, commit, torch."""
    import shlex

    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    argv = sys.argv[1:] if argv is None else list(argv)
    return {"script": script, "command": shlex.join(["python", "-m", script, *argv]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": name, "commit": commit(), "torch": torch.__version__}


def pick_device(arg: str | None) -> torch.device:
    dev = torch.device(arg or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but torch sees no GPU; use --device cpu")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return dev


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; a no-op context otherwise."""
    import contextlib

    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)


def check_out_dir(out_dir, resume: bool, training_args: tuple[str, ...], args) -> dict | None:
    """Guard the output folder; on --resume, put the stored training arguments back into `args`.

    Returns the stored checkpoint meta (None for a fresh start). Without --resume an existing
    checkpoint is refused, so a run never silently overwrites another one.
    """
    meta = latest_meta(out_dir)
    if meta is None:
        if resume:
            log.warning("--resume: no checkpoint in %s; starting from step 0", out_dir)
        return None
    if not resume:
        raise ConfigError(f"{out_dir} already holds a checkpoint (step {meta['step']}); pass --resume to continue "
                          "it, or choose another --out")
    stored = meta["extra"]["args"]
    for k in training_args:
        if getattr(args, k) != stored[k]:
            log.warning("--resume: keeping the checkpoint's %s=%r (the command line said %r)", k, stored[k],
                        getattr(args, k))
        setattr(args, k, stored[k])
    return meta


def run_main(run, parse_args, argv, log) -> int:
    """The scripts' shared `main`: parse, run, log the card; a VdrtError is one line and exit code 2."""
    setup_logging()
    try:
        args = parse_args(argv)
        args.argv = sys.argv[1:] if argv is None else list(argv)
        card = run(args)
    except VdrtError as e:
        log.error("%s", e)
        return 2
    log.info("done: %s", card)
    return 0
