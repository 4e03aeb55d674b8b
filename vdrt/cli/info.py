"""`vdrt info`: the device and which toolchains (torch, triton, CUDA, ONNX, onnxruntime, TensorRT) are present."""
from __future__ import annotations

import importlib
import json


def add_parser(sub):
    p = sub.add_parser("info", help="device and toolchain availability", description=__doc__)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_info)


OPTIONAL = [("triton", "triton"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("onnxscript", "onnxscript"),
            ("tensorrt", "tensorrt"), ("diffusers", "diffusers"), ("transformers", "transformers"), ("av", "av"),
            ("cuda.bindings", "cuda-python")]


def collect() -> dict:
    import torch

    import vdrt

    info = {"vdrt": vdrt.__version__, "torch": torch.__version__, "cuda_build": torch.version.cuda,
            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)"
    for mod, dist in OPTIONAL:
        info[dist] = _version(mod)
    if info.get("onnxruntime") not in (None, "missing"):
        import onnxruntime

        info["onnxruntime_providers"] = ",".join(onnxruntime.get_available_providers())
    return info


def _version(mod: str) -> str:
    try:
        m = importlib.import_module(mod)
    except ImportError:
        return "missing"
    except Exception as e:  # a broken install (e.g. a CUDA-only wheel on a CPU box): report, do not crash
        return f"broken ({type(e).__name__}: {e})"
    return getattr(m, "__version__", "present")


def run_info(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        from vdrt.tables import pairs

        print(pairs([info]))
        if info["tensorrt"] == "missing":
            print("(TensorRT: install NVIDIA's wheels with `pip install tensorrt` from NVIDIA's index; "
                  "vdrt's TensorRT backend needs TensorRT 10)")
    return 0
