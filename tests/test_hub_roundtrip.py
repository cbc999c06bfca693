"""save_pretrained -> AutoModel / AutoProcessor with trust_remote_code, in a fresh process, elsewhere, offline."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.helpers import model_inputs, random_image, tiny_model, tiny_processor

_LOAD_AND_RUN = textwrap.dedent(
    """
    import sys, torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor
    folder, image_path, out_path = sys.argv[1:4]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    batch = processor(images=[Image.open(image_path)] * 2, emotions=["awe", "fear"],
                      explanations=["the star makes me smile", "the dark tree"])
    inputs = {k: v for k, v in batch.items() if k not in ("original_sizes", "reshaped_input_sizes")}
    with torch.no_grad():
        out = model(**inputs)
        gen = model.segment_and_explain(emotion_ids=batch["emotion_ids"], pixel_values=batch["pixel_values"],
                                        clip_pixel_values=batch["clip_pixel_values"],
                                        prompt_input_ids=batch["prompt_input_ids"], seeds=[5, 6])
    torch.save({"pred_masks": out.pred_masks, "logits": out.logits, "loss": out.loss,
                "sequences": gen.sequences, "modules": type(model).__module__}, out_path)
    """
)


@pytest.mark.parametrize("paradigm", ["single", "multi"])
def test_auto_classes_reload_identically_in_a_fresh_process(tmp_path, paradigm):
    model = tiny_model(paradigm=paradigm).eval()
    processor = tiny_processor()
    folder = tmp_path / "emosem-tiny"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)

    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_emosem.EmoSEMConfig", "AutoModel": "modeling_emosem.EmoSEMModel"}
    assert json.loads((folder / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "processing_emosem.EmoSEMProcessor"
    }
    assert (folder / "model.safetensors").exists()
    assert not any(p.is_dir() for p in folder.iterdir() if p.suffix == "")  # flat: code files beside the weights

    image_path = tmp_path / "art.png"
    random_image(70, 110).save(image_path)
    batch = processor(images=[str(image_path)] * 2, emotions=["awe", "fear"],
                      explanations=["the star makes me smile", "the dark tree"])
    with torch.no_grad():
        expected = model(**model_inputs(batch))
        gen = model.segment_and_explain(emotion_ids=batch["emotion_ids"], pixel_values=batch["pixel_values"],
                                        clip_pixel_values=batch["clip_pixel_values"],
                                        prompt_input_ids=batch["prompt_input_ids"], seeds=[5, 6])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = elsewhere / "load.py"
    script.write_text(_LOAD_AND_RUN)
    out_path = tmp_path / "out.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    # A clean sys.path: the fresh process must not import our packages from the repository.
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(folder), str(image_path), str(out_path)],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = torch.load(out_path, weights_only=True)
    assert got["modules"].startswith("transformers_modules"), got["modules"]
    torch.testing.assert_close(got["pred_masks"], expected.pred_masks)
    torch.testing.assert_close(got["logits"], expected.logits)
    torch.testing.assert_close(got["loss"], expected.loss)
    assert torch.equal(got["sequences"], gen.sequences)
