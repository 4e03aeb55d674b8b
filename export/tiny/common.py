"""What the tiny-model scripts share: card writing, run information, the device, the scripts' main.

- `write_card`: `<name>.safetensors` (fp16 weights, under MAX_FILE_BYTES) and then `<name>.json`,
  the model card `vdrt.embedded` reads (name, weights, sha256, config, text, defaults, trained);
- `run_info`: command, date, device, commit and torch of a run (a card's `trained` section);
- `check_out`: a run never silently overwrites another one's state;
- `run_main`: parse, run, log; a VdrtError is one line and exit code 2.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

from vdrt.errors import CheckpointError, ConfigError, VdrtError
from vdrt.export.tiny.state import MAX_FILE_BYTES, state_files
from vdrt.fsutil import atomic_path, sha256_file

log = logging.getLogger(__name__)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp))


def write_json(path: Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def write_card(out_dir, name: str, state: dict[str, torch.Tensor], config: dict, text: dict, defaults: dict,
               trained: dict, extras: dict | None = None) -> Path:
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
            "config": config, "text": text, "defaults": defaults, **(extras or {}), "trained": trained}
    write_json(out / f"{name}.json", card)
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


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)


def check_out(out_dir, name: str, resume: bool) -> None:
    """Refuse to start over a saved state of `name` in out_dir without --resume."""
    files = state_files(out_dir, name)
    if files and not resume:
        raise ConfigError(f"{out_dir} already holds a training state of {name} ({files[0].name}); pass --resume to "
                          "continue it, or choose another --out")


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
