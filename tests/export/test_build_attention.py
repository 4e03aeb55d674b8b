"""`vdrt build --attention/--sparse`: the attention compiled into an engine, recorded in its manifest."""
import json

import pytest
import torch

from vdrt import ops
from vdrt.cli import main
from vdrt.sparse import SparseConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sparse_onnx_engine_matches_the_eager_sparse_model(tmp_path):
    """wan-tiny built as ONNX with sparse attention at one size: the manifest records the choice, and the
    engine equals the eager model run under the same choice (and differs from dense)."""
    out = tmp_path / "e"
    argv = ["build", "wan-tiny", "--backend", "onnx", "--precision", "fp32", "--frames", "17", "--height", "64",
            "--width", "64", "--batch", "1", "--attention", "vdrt-sparse", "--sparse", "1x2x2", "--device", "cpu",
            "--out", str(out), "--no-cache"]
    assert main(argv) == 0
    options = json.loads((out / "manifest.json").read_text())["build"]["options"]
    assert options["attention"] == "vdrt-sparse" and options["sparse"]["window"] == [1, 2, 2]
    import vdrt

    engine = vdrt.load_engine(out)
    den = vdrt.load_denoiser("wan-tiny")
    g = torch.Generator().manual_seed(0)
    x, t, ctx = torch.randn(1, 16, 5, 8, 8, generator=g), torch.tensor([300.0]), torch.randn(1, 16, 64, generator=g)
    with torch.no_grad(), ops.use(attention="vdrt-sparse", sparse=SparseConfig(window=(1, 2, 2))):
        want = den(x, t, ctx)
    with torch.no_grad():
        dense = den(x, t, ctx)
    got = engine(x, t, ctx)
    assert (got - want).abs().max() < 1e-4 * want.abs().max()
    assert (dense - want).abs().max() > 1e-3


@pytest.mark.parametrize("extra, match", [
    (["--attention", "vdrt-sparse", "--frames", "9:17:17"], "one size"),
    (["--sparse", "0.25"], "--sparse goes with"),
    (["--attention", "vdrt-int8", "--sparse", "0.25"], "--sparse goes with"),
    (["--attention", "magic"], "unknown implementation"),
])
def test_bad_attention_flags_are_refused_before_loading(tmp_path, capsys, extra, match):
    assert main(["build", "wan-tiny", "--backend", "onnx", "--out", str(tmp_path / "e"), *extra]) == 2
    assert match in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_run_refuses_attention_flags_on_an_engine(tmp_path, capsys):
    eng = tmp_path / "eng"
    eng.mkdir()
    (eng / "manifest.json").write_text("{}")
    assert main(["run", str(eng), "a red circle", "-o", str(tmp_path / "o.gif"), "--attention", "vdrt-int8"]) == 2
    assert "runs the attention it was built with" in capsys.readouterr().err
