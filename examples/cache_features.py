"""Cache the frozen SAM and CLIP features of a dataset once, then train or evaluate from them.

    python examples/cache_features.py --config examples/configs/paper.yaml --out cache/paper
    accelerate launch examples/train.py --config examples/configs/paper.yaml --feature_cache cache/paper

    python examples/cache_features.py --model outputs/quickstart --dataset synthetic --out cache/eval
    python examples/evaluate.py --model outputs/quickstart --dataset synthetic --feature-cache cache/eval --out eval/

Interrupted builds resume; a cache built for other encoder weights, configuration, preprocessing or
dataset is refused by training and evaluation. See emosem/feature_cache.py.
"""

import os
import sys

# This folder holds evaluate.py, which would shadow the `evaluate` library for scripts run from here.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


from emosem.feature_cache import main  # noqa: E402

if __name__ == "__main__":
    main()
