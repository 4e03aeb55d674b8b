"""export-dataset: files, labels against the renderer's truth, refusal of a non-empty folder, --force."""
import json

import numpy as np
import pytest

from vdrt.export.tiny import dataset as D
from vdrt.export.tiny.data import procedural as P
from vdrt.export.tiny.data.world import Geometry


def test_writes_clips_labels_and_manifest(tmp_path):
    out = tmp_path / "ds"
    assert D.main([str(out), "--n", "5", "--split", "val", "--start", "62", "--frames", "9", "--width", "96"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["n"] == 5 and man["split"] == "val" and (man["frames"], man["height"], man["width"]) == (9, 64, 96)
    clips, texts = P.batch("val", 62, 5, Geometry(9, 64, 96))
    for i, row in enumerate(man["clips"]):
        assert row["index"] == 62 + i and row["caption"] == texts[i]
        assert np.array_equal(np.load(out / row["clip"]), clips[i])
        labels = json.loads((out / row["labels"]).read_text())
        spec = P.dataset_spec("val", 62 + i, Geometry(9, 64, 96))[0]
        _, truth = P.render_with_truth(spec)
        assert [o["colour"] for o in labels["objects"]] == [o.colour for o in spec.objects]
        for k, obj in enumerate(labels["objects"]):
            assert obj["area"] == truth.areas[k].tolist() and len(obj["centroid"]) == 9
            for t, c in enumerate(obj["centroid"]):
                if c is None:
                    assert truth.areas[k, t] == 0
                else:
                    np.testing.assert_allclose(c, truth.centroids[k, t], atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary left behind


def test_refuses_a_non_empty_folder_without_force(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert D.main([str(out), "--n", "2"]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert D.main([str(out), "--n", "2", "--force"]) == 0
    assert not (out / "keep.txt").exists() and len(list((out / "labels").iterdir())) == 2


@pytest.mark.parametrize("argv, word", [(["--n", "0"], "--n"), (["--n", "2", "--format", "avi"], "--format"),
                                        (["--n", "2", "--frames", "0"], "frames"),
                                        (["--n", "2", "--split", "dev"], "split")])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, word):
    out = tmp_path / "ds"
    assert D.main([str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert word in err and err.count("\n") == 1 and not out.exists()
    assert list(tmp_path.iterdir()) == []
