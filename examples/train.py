"""Train EmoSEM.

    accelerate launch examples/train.py --config examples/configs/quickstart.yaml
    accelerate launch examples/train.py --config examples/configs/paper.yaml --artemis_csv ... --image_root ...
    accelerate launch examples/train.py --config examples/configs/quickstart.yaml --resume latest
    python examples/cache_features.py --config examples/configs/paper.yaml --out cache/paper
    accelerate launch examples/train.py --config examples/configs/paper.yaml --feature_cache cache/paper

Any configuration key can be overridden as `--key value` (dotted keys reach into dicts:
`--synthetic.n 400`; `--feature-cache` and `--feature_cache` are the same key). See
emosem/training/config.py for every key.
"""

import os
import sys

# This folder holds evaluate.py, which would shadow the `evaluate` library for scripts run from here.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


import argparse  # noqa: E402

from emosem.training import load_train_config, train  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file (examples/configs/)")
    args, overrides = parser.parse_known_args(argv)
    summary = train(load_train_config(args.config, overrides))
    if summary.get("final_eval"):
        from emosem.evaluation import table1_row
        from emosem.metrics_utils import format_table1_markdown

        print(format_table1_markdown({"EmoSEM (this run)": table1_row(summary["final_eval"])}))
        if "element_mention_rate" in summary["final_eval"]:
            print(f"explanations naming the emotion's element: {summary['final_eval']['element_mention_rate']:.1f}%")


if __name__ == "__main__":
    main()
