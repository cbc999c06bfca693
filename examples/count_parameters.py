"""Parameter counts of EmoSEM's variants at their paper-size presets, measured on the meta device
(no memory, no weights; seconds even for the 7B LLaVA). Prints the README's "Variants" table.

    python examples/count_parameters.py            # markdown table
    python examples/count_parameters.py --json     # raw numbers
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import torch  # noqa: E402

from modeling_emosem import EmoSEMConfig, EmoSEMModel  # noqa: E402

VARIANTS = [
    # name, preset, flags as written in a config, paper's count (Table 4)
    ("EmoSEM (Single-Mask)", "paper", "`explainer: gpt2`, `bridge: prefix_adapter`", "276.72M"),
    ("EmoSEM (Multi-Masks)", "paper", "`paradigm: multi`", None),
    ("EmoSEM-LLaVA", "llava", "`explainer: llava` (+ `lora_rank/alpha/dropout/target_modules`)", "7B"),
    ("SCAbase", "sca", "`bridge: sca_mixer` (+ `sca_num_layers: 12`)", "237.67M"),
]


def count(preset: str, **overrides) -> dict:
    with torch.device("meta"):
        model = EmoSEMModel(EmoSEMConfig.from_preset(preset, **overrides))
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    return {"total": total, "trainable": trainable, "lora": lora, "trainable_modules": list(model.config.trainable_modules)}


def measure() -> dict:
    out = {}
    for name, preset, _, _ in VARIANTS:
        overrides = {"paradigm": "multi"} if "Multi" in name else {}
        out[name] = {"preset": preset, **count(preset, **overrides)}
    return out


def _fmt(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def markdown(numbers: dict) -> str:
    lines = [
        "| variant | preset / config flags | parameters (paper preset, measured) | paper (Table 4) | trained parameters | trained modules |",
        "|---|---|---|---|---|---|",
    ]
    for name, preset, flags, paper in VARIANTS:
        n = numbers[name]
        trained = _fmt(n["trainable"]) + (f" (LoRA {_fmt(n['lora'])})" if n["lora"] else "")
        lines.append(
            f"| {name} | `{preset}`: {flags} | {_fmt(n['total'])} | {paper or '-'} | {trained} | "
            f"{', '.join(n['trainable_modules'])} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    numbers = measure()
    print(json.dumps(numbers, indent=2) if args.json else markdown(numbers))


if __name__ == "__main__":
    main()
