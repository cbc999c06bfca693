#!/usr/bin/env python
"""Build EmoSEM training pseudo masks: SAM regions scored by CLIP against the ArtEmis utterances.

Writes ``<out-dir>/<painting>_<emotion>.npy`` (float32 heat maps in [0, 1], APOLO layout).
Resumable: re-running skips finished files.

    python examples/make_pseudo_masks.py \
        --artemis-csv artemis_dataset_release_v0.csv --image-root wikiart/ --out-dir pseudo_masks/ \
        --sam facebook/sam-vit-base --clip openai/clip-vit-base-patch16
"""

import argparse

from datasets_emosem import ClipScorer, SamRegionProposer, generate_pseudo_masks, group_stimuli, load_artemis


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artemis-csv", required=True, help="artemis_dataset_release_v0.csv (or a v2.0 Combined CSV)")
    p.add_argument("--image-root", required=True, help="WikiArt folder: <image-root>/<art_style>/<painting>.jpg")
    p.add_argument("--image-extension", default=".jpg")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--sam", default="facebook/sam-vit-base", help="SamModel path or hub id")
    p.add_argument("--clip", default="openai/clip-vit-base-patch16", help="CLIPModel path or hub id")
    p.add_argument("--split", default="train", help="ArtEmis split to process (train, validation, test, all)")
    p.add_argument("--points-per-side", type=int, default=16)
    p.add_argument("--points-per-batch", type=int, default=64)
    p.add_argument("--clip-batch-size", type=int, default=64)
    p.add_argument("--max-regions", type=int, default=48)
    p.add_argument("--output-size", type=int, default=None, help="square map size (e.g. 7 like APOLO); default image size")
    p.add_argument("--limit", type=int, default=None, help="process only the first N (painting, emotion) stimuli")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)

    # Missing images are skipped (and counted in the log) rather than aborting a long run.
    dsd = load_artemis(args.artemis_csv, args.image_root, image_extension=args.image_extension, on_missing="skip",
                       drop_something_else=True)
    splits = list(dsd) if args.split == "all" else [args.split]
    if any(s not in dsd for s in splits):
        p.error(f"--split must be one of {list(dsd)} or 'all', got {args.split!r}")
    stimuli = [s for split in splits for s in group_stimuli(dsd[split])]
    if args.limit is not None:
        stimuli = stimuli[: args.limit]
    proposer = SamRegionProposer(args.sam, points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                                 max_regions=args.max_regions, device=args.device)
    scorer = ClipScorer(args.clip, batch_size=args.clip_batch_size, device=args.device)
    counts = generate_pseudo_masks(stimuli, args.out_dir, proposer, scorer, output_size=args.output_size)
    print(counts)


if __name__ == "__main__":
    main()
