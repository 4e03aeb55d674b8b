"""The Python API misused: `Pipeline.from_pretrained` / `pipe(...)`, `GenerateRequest`, `load_denoiser`,
`load_engine`, `vdrt.export.build`, `vdrt.io`. Each refusal is a vdrt.errors exception that is also the builtin
a caller catches (TypeError for a wrong type, ValueError for a wrong value, MemoryError for a refused size), one
line naming the problem, raised before any step runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vdrt
from tests.hardening.hardening_helpers import api_refusal, record
from vdrt.request import GenerateRequest

S = dict(num_frames=5, height=32, width=32, num_steps=1, progress=False)
T, V, M = TypeError, ValueError, MemoryError


@pytest.fixture(scope="module")
def pipe():
    return vdrt.Pipeline.from_pretrained("factorized-tiny", device="cpu")


@pytest.fixture(scope="module")
def den():
    return vdrt.load_denoiser("factorized-tiny")


CALLS = [  # pipe(prompt, **S, **kw)
    ("x", dict(seed="abc"), T, ("seed='abc'",)),
    ("x", dict(seed=2**64), V, ("[0, 2^63)",)),
    ("x", dict(seed=-1), V, ("seed=-1",)),
    ("x", dict(seed=3.7), T, ("seed=3.7",)),
    ("x", dict(seed=True), T, ("seed=True",)),
    (5, {}, T, ("prompt",)),
    ([], {}, V, ("non-empty list",)),
    (["a", 5], {}, T, ("prompt",)),
    (("a", None), {}, T, ("prompt",)),
    ("x", dict(negative_prompt=3), T, ("negative_prompt",)),
    ("x", dict(num_frames="17"), T, ("num_frames='17'",)),
    ("x", dict(num_frames=True), T, ("num_frames=True",)),
    ("x", dict(num_frames=0), V, ("num_frames=0",)),
    ("x", dict(num_frames=64), V, ("at most 32 frames",)),
    ("x", dict(num_inference_steps=10**11), V, ("limit of 1000",)),
    ("x", dict(num_steps=2.0), T, ("num_steps=2.0",)),
    ("x", dict(num_videos_per_prompt=100000), V, ("limit of 1024",)),
    ("x", dict(num_videos_per_prompt=0), V, ("num_videos=0",)),
    ("x", dict(guidance_scale="high"), T, ("guidance='high'",)),
    ("x", dict(guidance_scale=float("inf")), V, ("finite",)),
    ("x", dict(guidance_scale=float("nan")), V, ("finite",)),
    ("x", dict(guidance_range=(0.5, 0.2)), V, ("guidance_range",)),
    ("x", dict(guidance_range=0.5), T, ("guidance_range",)),
    ("x", dict(height=30), V, ("multiple of 4",)),
    ("x", dict(height=10**7), V, ("above the limit",)),
    ("x", dict(width=-32), V, ("width=-32",)),
    ("x", dict(fps=0), V, ("fps=0",)),
    ("x", dict(fps="8"), T, ("fps='8'",)),
    ("x", dict(shift=0.0), V, ("shift",)),
    ("x", dict(output_type="gif"), V, ("output_type='gif'",)),
    ("x", dict(output_type=5), T, ("output_type=5",)),
    ("x", dict(mode="warp"), V, ("unknown mode",)),
    ("x", dict(mode=None), T, ("mode=None",)),
    ("x", dict(mode="i2v", image=5), T, ("image=",)),
    ("x", dict(mode="i2v", image={"a": 1}), T, ("image=",)),
    ("x", dict(mode="i2v", image="/no/such.png"), V, ("/no/such.png", "does not exist")),
    ("x", dict(mode="i2v", image=np.zeros((8, 8), np.uint8)), V, ("uint8 (H, W, 3)",)),
    ("x", dict(mode="i2v", image=np.zeros((8, 8, 3), np.float32)), V, ("dtype float32",)),
    ("x", dict(mode="v2v"), V, ("needs an input video",)),
    ("x", dict(strength=0.5), V, ("does not use strength",)),
    ("x", dict(known_frames=2), V, ("does not use known_frames",)),
    ("x", dict(mask=np.ones((32, 32), bool)), V, ("does not use mask",)),
    ("x", dict(mode="inpaint", video=np.zeros((5, 32, 32, 3), np.uint8), mask=np.ones((16, 16), bool)), V,
     ("does not match",)),
    ("x", dict(mode="extend", video=np.zeros((5, 32, 32, 3), np.uint8), known_frames=5), V, ("below",)),
    ("x", dict(latents=torch.randn(1, 3, 4, 32, 32)), V, ("do not fit",)),
    ("x", dict(latents="abc"), T, ("latents=",)),
    ("x", dict(latents=torch.full((1, 3, 5, 32, 32), float("nan"))), V, ("latents holds NaN",)),
    ("x", dict(latents=torch.randn(1, 3, 5, 32, 32, dtype=torch.complex64)), V, ("complex64",)),
    ("x", dict(prompt_embeds="x"), T, ("prompt_embeds=",)),
    ("x", dict(prompt_embeds=torch.randn(3)), V, ("prompt embeddings of shape (3,)",)),
    ("x", dict(prompt_embeds=torch.full((4, 64), float("inf"))), V, ("prompt_embeds holds NaN or Inf",)),
    ("x", dict(prompt_embeds=torch.ones(4, 64, dtype=torch.int64)), V, ("prompt_embeds has dtype torch.int64",)),
    ("x", dict(image_embeds=torch.randn(1, 4, 8)), V, ("image_embeds=", "drop it")),
    ("x", dict(generator=3), T, ("generator",)),
    ("x", dict(callback_on_step_end=5), V, ("callable",)),
    ("x", dict(callback_on_step_end_tensor_inputs=["noise"]), V, ("not available",)),
    ("x", dict(foo=1), V, ("unknown argument 'foo'",)),
    ("x", dict(num_steps=2, num_inference_steps=2), V, ("name the same setting",)),
]


@pytest.mark.parametrize("prompt, kw, builtin, words", CALLS, ids=[f"{k}" for _, k, _, _ in CALLS])
def test_pipe_call_refuses(pipe, prompt, kw, builtin, words, work):
    base = {k: v for k, v in S.items() if not (k == "num_steps" and "num_inference_steps" in kw)}
    record("api: pipe()", repr(kw)[:80], api_refusal(lambda: pipe(prompt, **{**base, **kw}), builtin, words, work))


def test_pipe_of_a_request_takes_nothing_else(pipe, work):
    req = GenerateRequest(prompt="x", num_frames=5, height=32, width=32, num_steps=1)
    record("api: pipe()", "request + kwargs", api_refusal(lambda: pipe(req, num_steps=3), V, ("takes no other",)))


def test_pipe_refuses_a_size_that_does_not_fit_memory(pipe, work, monkeypatch):
    monkeypatch.setenv("VDRT_MEMORY_LIMIT", "256M")
    call = lambda: pipe("x", num_frames=32, height=512, width=512, num_steps=1, progress=False)  # noqa: E731
    record("api: pipe()", "memory", api_refusal(call, M, ("needs about", "256.00 MiB" if False else "available")))


FROM = [
    (dict(device="tpu"), V, ("'tpu'",)),
    (dict(device="cuda"), V, ("CPU-only",)),
    (dict(device=5), V, ("device=5",)),
    (dict(device=3.5), T, ("device=3.5",)),
    (dict(device="cuda", cuda_graphs=True), V, ("cuda",)),
    (dict(dtype="float17"), V, ("float17",)),
    (dict(dtype=torch.int32), V, ("torch.int32",)),
    (dict(dtype=torch.complex64), V, ("torch.complex64",)),
    (dict(dtype=5), T, ("dtype=5",)),
    (dict(torch_dtype="int8"), V, ("int8",)),
    (dict(dtype=torch.float32, torch_dtype="float16"), V, ("disagree",)),
    (dict(cuda_graphs=True), V, ("cuda_graphs=True needs",)),
    (dict(cuda_graphs="yes"), T, ("cuda_graphs='yes'",)),
    (dict(trust_pickle="false"), T, ("trust_pickle='false'",)),
    (dict(lora=5), T, ("lora=5",)),
    (dict(lora="/no/such.safetensors"), V, ("/no/such.safetensors",)),
    (dict(lora=[("/no/such.safetensors", "x")]), V, ("does not exist",)),
    (dict(recipe="nope"), V, ("unknown recipe",)),
    (dict(recipe="wan-4step-distill"), V, ("wan-4step-distill",)),
]


@pytest.mark.parametrize("kw, builtin, words", FROM, ids=[repr(k)[:50] for k, _, _ in FROM])
def test_from_pretrained_refuses(kw, builtin, words, work):
    call = lambda: vdrt.Pipeline.from_pretrained("factorized-tiny", **{"device": "cpu", **kw})  # noqa: E731
    record("api: from_pretrained", repr(kw)[:80], api_refusal(call, builtin, words, work))


SOURCES = [(None, T, ("source=None",)), (5, T, ("source=5",)), (3.5, T, ("source=3.5",)),
           ("nope-7b", V, ("unknown model preset",)), ("/no/such/dir", V, ("no such directory",)),
           (["factorized-tiny"], T, ("source=",))]


@pytest.mark.parametrize("source, builtin, words", SOURCES, ids=[repr(s) for s, _, _ in SOURCES])
def test_sources_are_refused_by_every_loader(source, builtin, words, work):
    record("api: sources", f"from_pretrained({source!r})",
           api_refusal(lambda: vdrt.Pipeline.from_pretrained(source, device="cpu"), builtin, words, work))
    record("api: sources", f"load_denoiser({source!r})",
           api_refusal(lambda: vdrt.load_denoiser(source), builtin, words[:1] if builtin is T else words, work))


LOAD = [
    (dict(dtype=torch.int32), V, ("torch.int32",)),
    (dict(dtype="abc"), V, ("'abc'",)),
    (dict(dtype=None), T, ("dtype=None",)),
    (dict(device="tpu"), V, ("'tpu'",)),
    (dict(device="cuda:3"), V, ("cuda:3",)),
    (dict(device=None), T, ("device=None",)),
    (dict(trust_pickle="no"), T, ("trust_pickle='no'",)),
    (dict(lora=5), T, ("lora=5",)),
    (dict(lora=[("a", "b", "c")]), V, ("(path, scale) pairs",)),
]


@pytest.mark.parametrize("kw, builtin, words", LOAD, ids=[repr(k)[:50] for k, _, _ in LOAD])
def test_load_denoiser_refuses(kw, builtin, words, work):
    record("api: load_denoiser", repr(kw), api_refusal(lambda: vdrt.load_denoiser("factorized-tiny", **kw), builtin,
                                                      words, work))


ENGINE = [
    (dict(path=None), T, ("engine directory path",)),
    (dict(path=5), T, ("engine directory path",)),
    (dict(path="/no/such"), V, ("not an engine directory",)),
    (dict(path=".", device="tpu"), V, ("'tpu'",)),
    (dict(path=".", device="cuda"), V, ("CPU-only",)),
    (dict(path=".", cuda_graphs="yes"), T, ("cuda_graphs",)),
]


@pytest.mark.parametrize("kw, builtin, words", ENGINE, ids=[repr(k)[:50] for k, _, _ in ENGINE])
def test_load_engine_refuses(kw, builtin, words, work):
    kw = dict(kw)
    path = kw.pop("path")
    record("api: load_engine", repr(kw), api_refusal(lambda: vdrt.load_engine(path, **kw), builtin, words, work))


BUILD = [
    (dict(module="abc"), T, ("vdrt denoiser module",)),
    (dict(out=None), T, ("out=None",)),
    (dict(out=5), T, ("out=5",)),
    (dict(device="tpu"), V, ("'tpu'",)),
    (dict(device="cuda"), V, ("CPU-only",)),
    (dict(force="yes"), T, ("force='yes'",)),
    (dict(cache="no"), T, ("cache='no'",)),
    (dict(shapes="big"), T, ("shapes='big'",)),
    (dict(shapes={"frames": "x", "height": (8, 8, 8), "width": (8, 8, 8)}), V, ("frames",)),
    (dict(shapes={"bogus": (1, 1, 1)}), V, ("bogus",)),
    (dict(precision="fp64"), V, ("fp64",)),
    (dict(precision=None), V, ("None",)),
    (dict(backend="trt"), V, ("unknown backend 'trt'",)),
    (dict(backend="onnx", precision="fp8"), V, ("fp8", "tensorrt")),
    (dict(backend="onnx", aoti_weights="in_so"), V, ("aoti_weights",)),
]


@pytest.mark.parametrize("kw, builtin, words", BUILD, ids=[repr(k)[:50] for k, _, _ in BUILD])
def test_export_build_refuses(den, kw, builtin, words, work):
    import vdrt.export

    args = {"module": den, "backend": "onnx", "out": str(work / "engine"), "precision": "fp32",
            "shapes": {"frames": (1, 2, 2), "height": (8, 8, 8), "width": (8, 8, 8)}, "load": False, **kw}
    record("api: export.build", repr(kw), api_refusal(lambda: vdrt.export.build(**args), builtin, words, work))


REQUESTS = [
    (dict(force="false"), T, ("force='false'",)),
    (dict(out=5), T, ("out=5",)),
    (dict(out="clip.avi"), V, ("unknown suffix",)),
    (dict(sampler=5), T, ("sampler=5",)),
    (dict(strength="0.5", mode="v2v", video=np.zeros((2, 8, 8, 3), np.uint8)), T, ("strength='0.5'",)),
    (dict(known_frames=2.0, mode="extend", video=np.zeros((2, 8, 8, 3), np.uint8)), T, ("known_frames=2.0",)),
    (dict(prompt=["a"] * 600, num_videos=2), V, ("600 prompts",)),
    (dict(image=(1, 2), mode="interpolate"), T, ("image=",)),
]


@pytest.mark.parametrize("kw, builtin, words", REQUESTS, ids=[repr(k)[:50] for k, _, _ in REQUESTS])
def test_generate_request_refuses(kw, builtin, words, work):
    record("api: GenerateRequest", repr(kw)[:80], api_refusal(lambda: GenerateRequest(**kw), builtin, words, work))


IO = [
    (lambda: vdrt.Video([[1, 2]]), V, ("numpy array",)),
    (lambda: vdrt.Video(np.zeros((2, 8, 8, 3), np.float32)), V, ("uint8",)),
    (lambda: vdrt.Video(np.zeros((2, 8, 8, 3), np.uint8), fps=0), V, ("fps",)),
    (lambda: vdrt.Video(np.zeros((2, 8, 8, 3), np.uint8), fps=True), V, ("fps",)),
    (lambda: vdrt.Video(np.zeros((0, 8, 8, 3), np.uint8)), V, ("T, H, W >= 1",)),
    (lambda: vdrt.io.read_video(".", max_frames=0), V, ("max_frames",)),
    (lambda: vdrt.io.read_video(".", max_frames=True), V, ("max_frames",)),
    (lambda: vdrt.io.read_video(".", size=(0, 5)), V, ("size",)),
    (lambda: vdrt.io.read_video(".", size="big"), V, ("(height, width)",)),
    (lambda: vdrt.io.read_mask("/no/such.png"), V, ("no such file",)),
    (lambda: vdrt.io.resize_frames(np.zeros((2, 8, 8, 3), np.uint8), -1, 2), V, ("positive ints",)),
    (lambda: vdrt.io.frames_from_float(np.zeros((3, 2, 8, 8))), V, ("float tensor",)),
    (lambda: vdrt.io.to_float(np.zeros((2, 8, 8, 3), np.int16)), V, ("uint8",)),
    (lambda: vdrt.Video(np.zeros((2, 8, 8, 3), np.uint8))["a"], V, ("index",)),
    (lambda: vdrt.Video(np.zeros((2, 8, 8, 3), np.uint8))[5], V, ("2 frames",)),
]


@pytest.mark.parametrize("i", range(len(IO)))
def test_io_api_refuses(i, work):
    call, builtin, words = IO[i]
    record("api: io", f"io case {i}", api_refusal(call, builtin, words, work))
