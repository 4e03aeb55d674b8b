"""What every `vdrt bench` row carries (device, commit, date, the run's start time, versions) and where model cards are found."""
from __future__ import annotations

import datetime
from pathlib import Path

import torch

from vdrt.errors import ConfigError, dist_version

DEFAULT_MODEL = "vdrt-tiny"


def find_card(name: str, weights_dir=None) -> Path | None:
    """The card `<name>.json` in weights_dir, else in the embedded weight folders; None if nowhere."""
    from vdrt import embedded

    if weights_dir is not None:
        path = Path(weights_dir) / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"no model card {path}; pass the folder the training scripts wrote "
                              "(python -m vdrt.export.tiny.train --out DIR)")
        return path
    return embedded.card_path(name)


def run_meta(device: torch.device) -> dict:
    from vdrt.fsutil import git_commit

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    now = datetime.datetime.now().astimezone()
    return {"device": name, "commit": git_commit(Path(__file__).parent), "date": now.date().isoformat(),
            "run": now.isoformat(timespec="seconds"), "torch": torch.__version__, "triton": dist_version("triton"),
            "vdrt": dist_version("vdrt")}


def device_of(arg) -> torch.device:
    return torch.device(arg or ("cuda" if torch.cuda.is_available() else "cpu"))
