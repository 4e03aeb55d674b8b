"""`vdrt inspect SOURCE`: describe an engine directory, a checkpoint directory or a preset."""
from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub):
    p = sub.add_parser("inspect", help="describe an engine dir, checkpoint dir or preset", description=__doc__)
    p.add_argument("source")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
    path = Path(args.source)
    if (path / "manifest.json").is_file():
        from vdrt.engines import inspect_engine

        info = inspect_engine(path)
    else:
        info = _model_info(args.source)
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else _table(info))
    return 0


def _model_info(source) -> dict:
    import torch

    from vdrt import models
    from vdrt.loader import load_directory

    path = Path(source)
    if path.is_dir():
        model = load_directory(path)
        config, kind = model.config, "checkpoint"
    else:
        config, kind = models.config_from_name(source), "preset (random weights)"
    with torch.device("meta"):
        params = sum(p.numel() for p in models.build_model(config).parameters())
    return {"source": str(source), "kind": kind, "params": params, "config": config.to_dict()}


def _table(info: dict, indent: str = "") -> str:
    lines = []
    for k, v in info.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:")
            lines.append(_table(v, indent + "  "))
        else:
            lines.append(f"{indent}{k:<18} {v}")
    return "\n".join(lines)
