"""Short training runs of the variants (pytest -m slow; CI runs them): EmoSEM-LLaVA (LoRA) and SCAbase each
lower both losses on synthetic artworks, save a model that examples/evaluate.py evaluates."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "examples", "train.py")
EVALUATE = os.path.join(REPO, "examples", "evaluate.py")

pytestmark = pytest.mark.slow


def _env(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


def _mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize("variant", ["llava", "sca"])
def test_variant_quickstart_lowers_both_losses_and_evaluates(tmp_path, variant):
    env, out = _env(tmp_path), tmp_path / "run"
    config = os.path.join(REPO, "examples", "configs", f"{variant}_quickstart.yaml")
    cmd = [sys.executable, TRAIN, "--config", config, "--synthetic", "{n: 240, seed: 3, image_size: 64}",
           "--per_device_batch_size", "8", "--max_steps", "100", "--log_every", "5", "--eval_every_epoch", "false",
           "--eval_text_metrics", "false", "--checkpoint_every", "0", "--report_to", "none", "--output_dir", str(out)]
    run = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/mask_loss" in r]
    assert len(train) >= 10
    for key in ("train/mask_loss", "train/lm_loss"):
        first, last = _mean([r[key] for r in train[:3]]), _mean([r[key] for r in train[-3:]])
        assert last < 0.9 * first, (key, first, last)
    config_json = json.loads((out / "config.json").read_text())
    if variant == "llava":
        assert config_json["explainer"] == "llava"
        assert (out / "lora_adapter" / "adapter_model.safetensors").exists()
    else:
        assert config_json["bridge"] == "sca_mixer"

    eval_dir = tmp_path / "eval"
    ev = subprocess.run([sys.executable, EVALUATE, "--model", str(out), "--dataset", "synthetic", "--synthetic-n", "24",
                         "--synthetic-image-size", "64", "--no-text-metrics", "--out", str(eval_dir)],
                        env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    files = {p.name for p in eval_dir.iterdir()}
    assert any(name.endswith(".json") for name in files), files
