"""Faults: damaged checkpoints and model folders, a training killed in the middle of a checkpoint save, a full disk
while writing predictions. Each is detected with an error naming the file, or survived without losing work."""

import errno
import json
import os
import shutil

import pytest
import torch
from transformers import pipeline

from emosem.integrity import CorruptFileError, check_model_folder, check_safetensors
from emosem.predict import OutputWriteError, load_pipeline, predict_to_folder
from emosem.training import train
from emosem.training.checkpoints import list_checkpoints, load_trainer_state, resolve_resume, verify_checkpoint
from tests.helpers import random_image, tiny_model, tiny_processor
from tests.robustness.counters import tried
from tests.test_training import tiny_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run, 4 steps, a checkpoint every step but the last, the last two kept."""
    tmp = tmp_path_factory.mktemp("trained")
    train(tiny_run(tmp, "--max_steps", "4", "--keep_checkpoints", "2"))
    return tmp / "run"


def _copy_run(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip one byte deep inside the data (not the header: no format check notices it)
        data[len(data) - len(data) // 3] ^= 0x01
        path.write_bytes(bytes(data))


def test_checkpoints_carry_checksums_and_verify(trained):
    checkpoints = list_checkpoints(str(trained))
    assert [os.path.basename(c) for c in checkpoints] == ["step-000002", "step-000003"]
    for checkpoint in checkpoints:
        record = json.loads(open(os.path.join(checkpoint, "checksums.json")).read())
        assert {"model.safetensors", "optimizer.bin", "trainer_state.json"} <= set(record["files"])
        verify_checkpoint(checkpoint)
    assert resolve_resume(str(trained), "latest") == checkpoints[-1]


@pytest.mark.parametrize("file", ["model.safetensors", "optimizer.bin", "random_states_0.pkl", "trainer_state.json"])
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_detected_naming_the_file(trained, tmp_path, file, how):
    run = _copy_run(trained, tmp_path)
    newest = run / "checkpoints" / "step-000003"
    _damage(newest / file, how)
    with pytest.raises(CorruptFileError) as info:
        resolve_resume(str(run), str(newest))
    message = str(info.value)
    assert "checkpoint step-000003 is corrupt" in message and file in message, message
    assert ("truncated" if how == "truncate" else "sha256 mismatch") in message, message
    # `latest` falls back to the previous good checkpoint, with a warning naming the bad one.
    with pytest.warns(UserWarning, match=f"skipping .*step-000003.*{file}"):
        assert resolve_resume(str(run), "latest").endswith("step-000002")
    tried("fault injections")


def test_every_checkpoint_damaged_raises_listing_them(trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    for name in ("step-000002", "step-000003"):
        _damage(run / "checkpoints" / name / "model.safetensors", "flip")
    with pytest.warns(UserWarning), pytest.raises(CorruptFileError, match="every checkpoint .* is corrupt") as info:
        resolve_resume(str(run), "latest")
    assert "step-000002" in str(info.value) and "step-000003" in str(info.value)
    tried("fault injections")


def test_a_pickled_state_file_with_code_is_refused_before_it_is_unpickled(trained, tmp_path):
    """accelerate unpickles custom objects with weights_only=False: a crafted file must never get there."""
    run = _copy_run(trained, tmp_path)
    newest = run / "checkpoints" / "step-000003"
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x": Exploit()}, newest / "custom_checkpoint_0.pkl")
    os.remove(newest / "checksums.json")  # an attacker rewrites the checkpoint, checksums and all
    with pytest.warns(UserWarning, match="no checksums.json"), pytest.raises(CorruptFileError, match="custom_checkpoint_0.pkl"):
        resolve_resume(str(run), str(newest))
    assert not marker.exists()
    tried("fault injections")


def test_killed_during_a_checkpoint_save_then_resume_latest(trained, tmp_path, monkeypatch):
    """The save of step 2 dies after writing part of its files (as a SIGKILL or a full disk would leave it):
    step 1 stays the latest checkpoint, loads, and `--resume latest` finishes the run."""
    from accelerate import Accelerator

    real = Accelerator.save_state

    def dying_save_state(self, output_dir=None, **kwargs):
        if os.path.basename(output_dir).endswith("step-000002"):
            real(self, output_dir, **kwargs)
            with open(os.path.join(output_dir, "model.safetensors"), "r+b") as f:
                f.truncate(1000)  # half-written, then the process dies
            raise KeyboardInterrupt("killed during the checkpoint save")
        return real(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", dying_save_state)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(tmp_path, "--max_steps", "3"))
    monkeypatch.setattr(Accelerator, "save_state", real)
    run = tmp_path / "run"
    assert [os.path.basename(c) for c in list_checkpoints(str(run))] == ["step-000001"]
    assert os.path.isdir(run / "checkpoints" / ".tmp-step-000002")  # the debris, never taken for a checkpoint
    assert resolve_resume(str(run), "latest").endswith("step-000001")
    summary = train(tiny_run(tmp_path, "--max_steps", "3", "--resume", "latest"))
    assert summary["global_step"] == 3
    assert load_trainer_state(list_checkpoints(str(run))[-1])["global_step"] >= 2
    assert (run / "model.safetensors").exists()
    check_model_folder(str(run))
    tried("fault injections")


@pytest.mark.parametrize("how", ["truncate", "flip_header", "tail"])
def test_a_damaged_model_folder_is_named_on_load(tmp_path, how):
    folder = tmp_path / "model"
    pipe = pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())
    pipe.save_pretrained(folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if how == "truncate":
        weights.write_bytes(bytes(data[: len(data) - 1000]))
        words = "truncated"
    elif how == "flip_header":
        data[20] ^= 0xFF
        weights.write_bytes(bytes(data))
        words = "damaged header"
    else:
        weights.write_bytes(bytes(data) + b"garbage")
        words = "unexpected bytes"
    with pytest.raises(CorruptFileError, match=words) as info:
        load_pipeline(str(folder))
    assert str(weights) in str(info.value)
    with pytest.raises(CorruptFileError):
        check_safetensors(weights)
    tried("fault injections")


def test_a_full_disk_while_writing_predictions_is_reported(tmp_path, monkeypatch):
    """ENOSPC in the middle of writing a JSON: an error naming the file, and no partial file under its name."""
    pipe = pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())
    images = []
    for i in range(3):
        path = tmp_path / f"art{i}.png"
        random_image(40, 50, seed=i).save(path)
        images.append(path)
    out = tmp_path / "out"
    real_fdopen = os.fdopen
    calls = {"json": 0}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if ".art1.json." in target:
            calls["json"] += 1
            return FullDisk(f)
        return f

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(OutputWriteError) as info:
        predict_to_folder(pipe, images, out, emotions=["awe"], max_new_tokens=3)
    assert calls["json"] == 1
    assert str(out / "art1.json") in str(info.value) and "no space left" in str(info.value)
    assert info.value.errno == errno.ENOSPC
    names = sorted(os.listdir(out))
    assert "art0.json" in names and "art1.json" not in names and not [n for n in names if n.endswith(".tmp")]
    tried("fault injections")


def test_a_full_disk_while_writing_overlays_is_reported(tmp_path, monkeypatch):
    """ENOSPC while a PNG is written: an error naming the PNG, no partial PNG or temporary file left."""
    from PIL import Image

    pipe = pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor())
    art = tmp_path / "art.png"
    random_image(40, 50).save(art)
    out = tmp_path / "out"
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if str(out) in str(fp):
            with open(fp, "wb") as f:
                f.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(OutputWriteError) as info:
        predict_to_folder(pipe, [art], out, emotions=["awe", "fear"], max_new_tokens=3)
    assert str(out / "art_awe.png") in str(info.value) and "no space left" in str(info.value), str(info.value)
    assert os.listdir(out) == []
    tried("fault injections")


def test_the_cli_reports_a_full_disk(tmp_path, monkeypatch, capsys):
    from emosem import cli, predict

    def no_space(*args, **kwargs):
        raise OutputWriteError(errno.ENOSPC, f"{tmp_path}/out/x.json: cannot write the output file (no space left on the device)",
                               f"{tmp_path}/out/x.json")

    art = tmp_path / "x.png"
    random_image(30, 30).save(art)
    model = tmp_path / "model"
    pipeline(task="emotion-segmentation", model=tiny_model().eval(), processor=tiny_processor()).save_pretrained(model)
    monkeypatch.setattr(predict, "predict_to_folder", no_space)
    code = cli.main(["predict", "--model", str(model), "--out", str(tmp_path / "out"), str(art)])
    assert code == 1
    err = capsys.readouterr().err
    assert "x.json" in err and "no space left" in err and "Traceback" not in err
    tried("fault injections")
