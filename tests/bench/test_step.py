"""`vdrt bench` timing rows (vdrt.bench.step, run, e2e): the issue's fields, peers on the same weights, bad input."""
import json

import pytest
import torch

from vdrt.cli import main

FIELDS = {"bench", "model", "case", "impl", "ms", "p90_ms", "first_ms", "peak_mem_gb", "tflops", "device",
          "commit", "date", "torch"}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_rows_carry_latency_memory_flops_and_the_end_to_end_clip(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert main(["bench", "wan-tiny", "--frames", "5", "--height", "32", "--width", "32", "--iterations", "3",
                 "--steps", "2", "--peers", "diffusers", "--device", "cpu", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "wan-tiny  1x5x32x32 fp32  on cpu" in table and "p90 ms" in table and "TFLOP/s" in table
    ours, peer, e2e = json.loads(out.read_text())
    assert FIELDS <= set(ours) and FIELDS <= set(peer)
    assert ours["impl"] == "vdrt-torch" and peer["impl"].startswith("diffusers-eager")
    assert 0 < ours["ms"] <= ours["p90_ms"] and ours["first_ms"] > 0 and ours["iterations"] == 3
    assert ours["tflops"] > 0 and ours["peak_mem_gb"] is None  # CPU
    assert ours["ceiling_source"].startswith("probe (cpu") and ours["ceiling_tflops"] > 0  # never a missing column
    assert peer["tflop_per_step"] == ours["tflop_per_step"]
    assert peer["rel_err_vs_first"] < 1e-5  # same weights, same inputs (live: perturbing a weight gives ~1e-2)
    assert e2e["impl"] == "vdrt-torch end-to-end clip" and e2e["steps"] == 2 and e2e["ms"] > 0
    assert e2e["case"] == "1x5x32x32 fp32, clip of 2 steps" and e2e["kind"] == "e2e"
    stages = [e2e[k] for k in ("text_ms", "denoise_ms", "decode_ms", "write_ms")]
    assert all(v > 0 for v in stages) and sum(stages) == pytest.approx(e2e["ms"], rel=1e-6)  # one clip timed
    assert e2e["ms_per_step"] == pytest.approx(e2e["denoise_ms"] / 2)


def test_flops_are_counted_on_a_meta_copy_and_match_the_matmul_count():
    from vdrt.bench.step import count_flops, step_inputs
    from vdrt.models import config_from_name

    cfg = config_from_name("wan-tiny")
    x = step_inputs(cfg, 1, 5, 32, 32, "cpu", torch.float32)  # latents 1x16x2x4x4: 8 tokens after 1x2x2 patches
    tokens, text, d, f, n = 2 * 2 * 2, cfg.text_len, cfg.dim, cfg.ffn_dim, cfg.num_layers
    blocks = n * (2 * tokens * d * d * 4 + 2 * tokens * d * d * 2 + 2 * text * d * d * 2  # projections
                  + 4 * tokens * tokens * d + 4 * tokens * text * d + 2 * tokens * d * f * 2)  # attention, FFN
    got = count_flops(cfg, x)
    assert blocks < got < 1.6 * blocks  # + the text / time embedders, patch embed and head


@pytest.mark.parametrize("argv, match", [
    (["factorized-tiny", "--peers", "diffusers,onnxruntime"], r"--peers onnxruntime: unknown; choose from "
                                                              r"diffusers,compile"),
    (["factorized-tiny", "--peers", "diffusers"], r"covers the wan family .* factorized"),
    (["factorized-tiny", "--backend", "tensorrt"], r"--backend tensorrt: unknown; choose from torch,aoti,onnx"),
    (["factorized-tiny", "--precision", "fp64"], r"--precision 'fp64' is not one of"),
])
def test_bad_input_is_one_line_exit_2(argv, match, capsys):
    import re

    assert main(["bench", *argv, "--device", "cpu", "--repeats", "1", "--frames", "2", "--height", "16",
                 "--width", "16"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.search(match, err), err


@pytest.mark.gpu
def test_cuda_graph_rows_replay_and_agree_with_eager(tmp_path):
    out = tmp_path / "rows.json"
    base = ["bench", "wan-tiny", "--frames", "5", "--height", "64", "--width", "64", "--iterations", "5",
            "--device", "cuda", "--precision", "fp32"]
    assert main([*base, "--json", str(out)]) == 0
    eager = json.loads(out.read_text())[0]
    assert main([*base, "--cuda-graphs", "--warmup", "3", "--json", str(out)]) == 0
    graphs = json.loads(out.read_text())[0]
    assert graphs["impl"] == "vdrt-torch +graphs" and graphs["ms"] > 0 and graphs["peak_mem_gb"] > 0
    assert eager["tflop_per_step"] == graphs["tflop_per_step"]
