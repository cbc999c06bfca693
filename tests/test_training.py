"""Training: configuration, per-group learning rates, checkpoints, a two-step run end to end, NaN stop."""

import json
import os

import pytest
import torch

from emosem.training import load_train_config, train
from emosem.training.checkpoints import list_checkpoints, resolve_resume
from emosem.training.optim import parameter_groups
from tests.helpers import tiny_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "examples", "configs", "quickstart.yaml")
PAPER = os.path.join(REPO, "examples", "configs", "paper.yaml")


def tiny_run(tmp_path, *extra):
    return load_train_config(QUICKSTART, [
        "--synthetic", "{n: 40, seed: 3, image_size: 64}", "--per_device_batch_size", "4", "--max_steps", "2",
        "--output_dir", str(tmp_path / "run"), "--report_to", "none", "--eval_text_metrics", "false",
        "--checkpoint_every", "1", "--log_every", "1", *extra,
    ])


def test_yaml_and_overrides():
    cfg = load_train_config(PAPER, ["--epochs", "3", "--learning_rates.default", "5e-5", "--synthetic.n=10"])
    assert cfg.epochs == 3 and cfg.learning_rates == {"language_model": 2e-4, "default": 5e-5}
    assert cfg.components["sam"] == "facebook/sam-vit-base"
    assert (cfg.per_device_batch_size, cfg.gradient_accumulation_steps) == (4, 4)
    with pytest.raises(ValueError, match="unknown configuration key 'epoch'"):
        load_train_config(None, ["--epoch", "3"])
    with pytest.raises(ValueError, match="mixed_precision must be"):
        load_train_config(None, ["--mixed_precision", "fp8"])


def test_paper_learning_rates_per_group():
    model = tiny_model()
    groups = parameter_groups(model, {"language_model": 2e-4, "default": 1e-4}, weight_decay=0.01)
    lrs = {g["name"].split("/")[0]: g["lr"] for g in groups}
    assert lrs == {"emotion_projector": 1e-4, "mask_tokens": 1e-4, "mask_head": 1e-4, "prefix_adapter": 1e-4,
                   "language_model": 2e-4}
    grouped = {id(p) for g in groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert grouped == trainable  # every trainable parameter exactly once, nothing frozen
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"].endswith("/no_decay"))


def test_two_step_training_writes_a_loadable_model(tmp_path):
    cfg = tiny_run(tmp_path)
    summary = train(cfg)
    out = tmp_path / "run"
    assert summary["global_step"] == 2
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(r["train/loss"] > 0 for r in steps)
    assert any("eval" in r and "seg_P@50" in r["eval"] for r in records)
    # The latest checkpoint is kept, the final weights and the card are written.
    assert [os.path.basename(p) for p in list_checkpoints(str(out))] == ["step-000001"]
    assert (out / "model.safetensors").exists() and (out / "train_config.yaml").exists()
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit") and "Seg P@50" in card and "{{" not in card
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(out), trust_remote_code=True)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_interrupted_save_leaves_the_previous_checkpoint(tmp_path):
    train(tiny_run(tmp_path))
    root = tmp_path / "run" / "checkpoints"
    (root / ".tmp-step-000009").mkdir()  # what a crash in the middle of a save leaves behind
    (root / "step-000010").mkdir()  # a folder without its state file is not a checkpoint
    assert resolve_resume(str(tmp_path / "run"), "latest").endswith("step-000001")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resolve_resume(str(tmp_path / "empty"), "latest")


def test_non_finite_loss_stops_naming_the_step(tmp_path):
    cfg = tiny_run(tmp_path, "--model_overrides", "{dice_weight: .nan}")
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 1 \(epoch 0, batch 0\)"):
        train(cfg)


def test_trained_folder_loads_as_a_pipeline_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    train(tiny_run(tmp_path))
    out = tmp_path / "run"
    config = json.loads((out / "config.json").read_text())
    assert "emotion-segmentation" in config["custom_pipelines"]
    script = (
        "import sys\n"
        "from transformers import AutoModel, pipeline\n"
        "from PIL import Image\n"
        "pipe = pipeline('emotion-segmentation', model=sys.argv[1], trust_remote_code=True)\n"
        "res = pipe(Image.new('RGB', (40, 30), (200, 10, 10)), emotions=['awe', 'fear'], seed=0)\n"
        "assert [r['emotion'] for r in res] == ['awe', 'fear'] and res[0]['mask'].size == (40, 30)\n"
        "AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "print('ok', type(pipe).__module__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run([sys.executable, "-I", "-c", script, str(out)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok transformers_modules")


def test_trained_folder_has_checksums_and_a_flipped_byte_is_caught(tmp_path):
    from emosem.integrity import CorruptFileError, verify_checksums

    train(tiny_run(tmp_path))
    out = tmp_path / "run"
    listed = json.loads((out / "checksums.json").read_text())["files"]
    assert "model.safetensors" in listed and not any("/" in name for name in listed)
    assert verify_checksums(out) == len(listed)
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01  # inside the tensor data, where safetensors itself would not notice
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="model.safetensors"):
        verify_checksums(out)
