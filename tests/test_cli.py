"""The `emosem` command: predict on a folder (JSON + PNG files), evaluate wiring, demo wiring, help, errors."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from emosem import cli
from emosem.predict import collect_images, load_pipeline, predict_to_folder
from tests.helpers import random_image, tiny_model, tiny_processor


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra intra-op threads only stall on a busy runner
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "emosem-tiny"
    pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor()).save_pretrained(folder)
    return folder


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    sizes = {"wide.png": (300, 4000), "tall.jpg": (517, 333), "tiny.png": (17, 17)}
    for name, (h, w) in sizes.items():
        random_image(h, w, seed=h).save(folder / name)
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder, sizes


def test_predict_on_a_folder_writes_json_and_pngs(checkpoint, images, tmp_path, capsys):
    folder, sizes = images
    out = tmp_path / "out"
    status = cli.main(["predict", str(folder), "--model", str(checkpoint), "--emotion", "awe", "Fear",
                       "--out", str(out), "--batch-size", "2", "--seed", "3"])
    assert status == 0, capsys.readouterr().err
    for name, (h, w) in sizes.items():
        stem = name.rsplit(".", 1)[0]
        record = json.loads((out / f"{stem}.json").read_text())
        assert record["image"] == str(folder / name) and (record["width"], record["height"]) == (w, h)
        assert record["seed"] == 3 and record["threshold"] == 0.5
        assert [r["emotion"] for r in record["results"]] == ["awe", "fear"]
        for r in record["results"]:
            assert 0.0 <= r["score"] <= 1.0 and 0.0 <= r["mask_fraction"] <= 1.0
            assert isinstance(r["explanation"], str)
            with Image.open(out / r["overlay"]) as png:
                png.load()
                assert png.format == "PNG"
                assert abs(png.width / png.height - w / h) < 0.01 * max(1.0, w / h)
            with Image.open(out / r["mask"]) as mask:
                assert mask.mode == "L" and mask.size == (w, h)
        with Image.open(out / f"{stem}_grid.png") as png:
            png.load()
    assert not list(out.glob("notes*"))
    assert "wrote 3 JSON" in capsys.readouterr().out


def test_predict_results_do_not_depend_on_batch_size(checkpoint, images, tmp_path):
    folder, _ = images
    pipe = load_pipeline(checkpoint)
    one = predict_to_folder(pipe, [folder], tmp_path / "one", emotions=["sadness"], batch_size=1, grid=False, seed=1)
    three = predict_to_folder(pipe, [folder], tmp_path / "three", emotions=["sadness"], batch_size=3, grid=False, seed=1)
    assert not one.errors and not three.errors
    for a, b in zip(one.json_files, three.json_files):
        ra, rb = json.loads(a.read_text())["results"], json.loads(b.read_text())["results"]
        assert [r["explanation"] for r in ra] == [r["explanation"] for r in rb]
        assert [r["score"] for r in ra] == pytest.approx([r["score"] for r in rb], abs=1e-5)


def test_predict_all_emotions_and_bad_files_are_reported(checkpoint, tmp_path, capsys):
    good = tmp_path / "good.png"
    random_image(40, 30).save(good)
    broken = tmp_path / "broken.jpg"
    full = tmp_path / "full.jpg"
    random_image(120, 120).save(full, quality=95)
    broken.write_bytes(full.read_bytes()[:400])
    out = tmp_path / "out"
    status = cli.main(["predict", str(good), str(broken), "--model", str(checkpoint), "--out", str(out),
                       "--emotion", "all", "--batch-size", "2", "--no-grid"])
    err = capsys.readouterr().err
    assert status == 1
    assert "broken.jpg" in err and "cannot be decoded" in err
    record = json.loads((out / "good.json").read_text())
    assert len(record["results"]) == 8 and record["emotions"] is None
    assert not (out / "good_grid.png").exists() and not (out / "broken.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{missing}", "--model", "{ckpt}", "--out", "{out}"], "no such file or folder"),
        (["predict", "{img}", "--model", "{ckpt}", "--out", "{out}", "--emotion", "joy"], "unknown emotion 'joy'"),
        (["predict", "{img}", "--model", "{nomodel}", "--out", "{out}"], "no such model folder"),
        (["predict", "{empty}", "--model", "{ckpt}", "--out", "{out}"], "holds no image files"),
    ],
)
def test_predict_errors_are_clear(checkpoint, tmp_path, capsys, args, message):
    img = tmp_path / "a.png"
    random_image(20, 20).save(img)
    (tmp_path / "empty").mkdir()
    values = {"missing": tmp_path / "nope.jpg", "ckpt": checkpoint, "out": tmp_path / "out", "img": img,
              "nomodel": tmp_path / "no-model", "empty": tmp_path / "empty"}
    status = cli.main([a.format(**{k: str(v) for k, v in values.items()}) for a in args])
    assert status == 2
    err = capsys.readouterr().err
    assert "emosem predict: error:" in err and message in err


def test_collect_images_keeps_explicit_files_and_orders_folders(tmp_path):
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "a.JPG").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.webp").write_bytes(b"")
    explicit = tmp_path / "x.dat"
    explicit.write_bytes(b"")
    assert [p.name for p in collect_images([tmp_path])] == ["a.JPG", "b.png"]
    assert [p.name for p in collect_images([tmp_path], recursive=True)] == ["a.JPG", "b.png", "c.webp"]
    assert [p.name for p in collect_images([explicit])] == ["x.dat"]
    with pytest.raises(ValueError, match="no images"):
        collect_images([])


def test_same_stems_do_not_overwrite_each_other(checkpoint, tmp_path):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        random_image(20, 30).save(tmp_path / sub / "art.png")
    report = predict_to_folder(load_pipeline(checkpoint), [tmp_path / "one", tmp_path / "two"], tmp_path / "out",
                               emotions="awe", max_new_tokens=2)
    assert sorted(p.name for p in report.json_files) == ["art-2.json", "art.json"]
    assert json.loads((tmp_path / "out" / "art-2.json").read_text())["image"].endswith(os.path.join("two", "art.png"))


def test_evaluate_forwards_its_arguments(monkeypatch):
    seen = {}
    fake = types.ModuleType("emosem.evaluation")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "emosem.evaluation", fake)
    assert cli.main(["evaluate", "--model", "x", "--help", "--split", "test"]) == 0
    assert seen["argv"] == ["--model", "x", "--help", "--split", "test"]
    fake.main = lambda argv: 3
    assert cli.main(["evaluate"]) == 3


def test_evaluate_reaches_the_real_evaluation_script(capsys):
    import emosem.evaluation  # noqa: F401  (the real module, not a stub)

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    assert "emosem evaluate" in capsys.readouterr().out


def test_demo_subcommand_launches_the_app(monkeypatch):
    import emosem.app

    calls = []
    monkeypatch.setattr(emosem.app, "launch", lambda model, **kw: calls.append((model, kw)))
    assert cli.main(["demo", "--model", "ckpt", "--port", "7999"]) == 0
    assert calls == [("ckpt", {"host": "127.0.0.1", "port": 7999, "max_upload_mb": 20.0, "device": None})]


def test_help_and_console_script():
    result = subprocess.run([sys.executable, "-m", "emosem.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for word in ("predict", "evaluate", "demo"):
        assert word in result.stdout
    result = subprocess.run([sys.executable, "-m", "emosem.cli", "predict", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "--emotion" in result.stdout and "--out" in result.stdout
    assert "mean saliency inside its mask" in result.stdout
    result = subprocess.run([sys.executable, "-m", "emosem.cli", "predict", "a.jpg"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "--model" in result.stderr
    assert cli.main([]) == 2


def test_mask_pngs_match_the_json(checkpoint, tmp_path):
    img = tmp_path / "a.png"
    random_image(33, 21).save(img)
    out = tmp_path / "out"
    assert cli.main(["predict", str(img), "--model", str(checkpoint), "--out", str(out), "--emotion", "awe",
                     "--threshold", "0.5"]) == 0
    record = json.loads((out / "a.json").read_text())["results"][0]
    mask = np.asarray(Image.open(out / record["mask"]))
    assert set(np.unique(mask)) <= {0, 255}
    assert record["mask_fraction"] == pytest.approx(float((mask > 0).mean()), abs=1e-6)
