"""ArtEmis loader: the release CSV + a WikiArt folder -> ``datasets.DatasetDict``.

Release format (``artemis_dataset_release_v0.csv``, 454,684 rows): columns
``art_style, painting, emotion, utterance, repetition``; images at
``<image_root>/<art_style>/<painting>.jpg``. ArtEmis v2.0 "Combined" CSVs (the contrastive rows
concatenated with v0, extra columns ``anchor_art_style, anchor_painting, version``) load too.

Splits follow the official preprocessing script exactly (see :func:`artemis_split_ids`): they are
computed over *every artwork in the CSV* before missing images are dropped, so a local copy with a
few missing files still gets the released split of every artwork it has.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from modeling_emosem.configuration_emosem import ARTEMIS_EMOTIONS

from .images import MissingFilesError, check_files, format_missing
from .paths import NameResolver, check_name

__all__ = ["load_artemis", "read_artemis_csv", "artemis_split_ids", "artemis_tokens", "ARTEMIS_FEATURES"]

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("art_style", "painting", "emotion", "utterance")
# Columns of the v2.0 Combined CSV that we keep when present (empty string otherwise).
OPTIONAL_TEXT_COLUMNS = ("anchor_art_style", "anchor_painting", "version")

ARTEMIS_FEATURES = Features(
    {
        # Lazy: stores the file path; decoded (EXIF-rotated, converted to RGB) when a row is read.
        "image": Image(mode="RGB"),
        "emotion": ClassLabel(names=list(ARTEMIS_EMOTIONS)),
        "utterance": Value("string"),
        "art_style": Value("string"),
        "painting": Value("string"),
        "repetition": Value("int32"),
        # Row index in the CSV: APOLO's ``artemis_id`` refers to these.
        "artemis_id": Value("int64"),
    }
)

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test", "rest": "rest"}


def read_artemis_csv(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Read an ArtEmis v0 or v2.0 Combined CSV, validated; every column as text except ``repetition``.

    Returns a frame with the required columns, ``repetition`` (int; counted per artwork when the CSV
    lacks it) and ``artemis_id`` (the 0-based row position, which APOLO's ``artemis_id`` indexes).
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"ArtEmis CSV not found: {csv_path}")
    # keep_default_na=False: an utterance that reads "NA" or "None" is text, not a missing value.
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except UnicodeDecodeError as e:
        raise ValueError(f"{csv_path}: not a UTF-8 text file ({e})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"{csv_path}: missing column(s) {missing}; an ArtEmis CSV needs {list(REQUIRED_COLUMNS)} "
            f"(found {list(df.columns)})"
        )
    bad = sorted(set(df["emotion"]) - set(ARTEMIS_EMOTIONS))
    if bad:
        raise ValueError(f"{csv_path}: unknown emotion label(s) {bad[:10]}; expected one of {list(ARTEMIS_EMOTIONS)}")
    if "repetition" in df.columns and (df["repetition"] != "").all():
        try:
            df["repetition"] = df["repetition"].astype(np.int64)
        except ValueError as e:
            raise ValueError(f"{csv_path}: column 'repetition' must hold integers ({e})") from None
    else:
        # The Contrastive CSV may not carry it; the number of annotations per artwork is what it means.
        df["repetition"] = df.groupby(["art_style", "painting"])["painting"].transform("size").astype(np.int64)
    df["artemis_id"] = np.arange(len(df), dtype=np.int64)
    return df


def artemis_split_ids(
    ids: Iterable[str], *, seed: int = 2021, val_fraction: float = 0.05, test_fraction: float = 0.10
) -> dict[str, str]:
    """Map each artwork id (``art_style + painting``) to ``"train" | "val" | "test"``.

    This is the ArtEmis preprocessing sequence, kept verbatim because the released splits depend
    on scikit-learn's exact shuffling::

        ids = unique(art_style + painting), sorted
        train, rest = train_test_split(ids, test_size=val + test, random_state=seed)
        val, test   = train_test_split(rest, test_size=round(test * len(ids)), random_state=seed)
    """
    from sklearn.model_selection import train_test_split

    unique_ids = np.array(sorted(set(ids)), dtype=object)
    n = len(unique_ids)
    n_test = int(round(test_fraction * n))
    try:
        train, rest = train_test_split(unique_ids, test_size=val_fraction + test_fraction, random_state=seed)
        val, test = train_test_split(rest, test_size=n_test, random_state=seed)
    except ValueError as e:
        raise ValueError(
            f"cannot split {n} artworks {1 - val_fraction - test_fraction:.0%}/{val_fraction:.0%}/"
            f"{test_fraction:.0%} (need enough artworks for every split): {e}"
        ) from None
    split = {i: "train" for i in train}
    split.update({i: "val" for i in val})
    split.update({i: "test" for i in test})
    return split


_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def artemis_tokens(utterance: str) -> list[str]:
    """Lower-cased word / punctuation tokens, close to ArtEmis' tokenizer (which also spell-corrects;
    we do not, so token counts can differ by a token on misspelt utterances)."""
    return _TOKEN_RE.findall(utterance.lower())


def _deep_net_filter(df: pd.DataFrame, min_tokens: int, max_token_percentile: float) -> pd.DataFrame:
    """ArtEmis' ``preprocess_for_deep_nets``: drop too short / too long utterances, in every split.

    As in the release script, the length limit is the percentile of the *train* split's token counts.
    """
    lengths = df["utterance"].map(lambda u: len(artemis_tokens(u)))
    too_long = float(np.percentile(lengths[df["split"] == "train"], max_token_percentile))
    keep = (lengths >= min_tokens) & (lengths <= too_long)
    return df[keep]


def load_artemis(
    csv_path: str | os.PathLike,
    image_root: str | os.PathLike,
    *,
    for_deep_nets: bool = False,
    too_high_repetition: int = 41,
    min_tokens: int = 5,
    max_token_percentile: float = 95.0,
    drop_something_else: bool = False,
    seed: int = 2021,
    image_extension: str = ".jpg",
    on_missing: str = "error",
    verify_images: bool = True,
    num_threads: int = 8,
) -> DatasetDict:
    """Load ArtEmis as released.

    Args:
        csv_path: ``artemis_dataset_release_v0.csv`` or a v2.0 Combined CSV.
        image_root: WikiArt folder holding ``<art_style>/<painting><image_extension>``. Names are
            matched whether the disk stores them NFC or NFD.
        for_deep_nets: apply the release's neural-net preprocessing: rows with
            ``repetition >= too_high_repetition`` go to a ``rest`` split (and the train/val/test split
            is drawn over the other artworks), utterances with fewer than ``min_tokens`` tokens or more
            than the ``max_token_percentile`` percentile of the train split's lengths are dropped.
        drop_something_else: drop rows labelled "something else" (EmoSEM uses the other 8 emotions).
            The label ids stay the 9 ArtEmis ones, so ids 0..7 equal EmoSEM's ``EMOTIONS`` order.
        on_missing: ``"error"`` (default) checks every referenced image first and raises one
            :class:`MissingFilesError` with the count and the first paths; ``"skip"`` drops those rows
            and logs how many.
        verify_images: open and ``PIL.verify()`` every image (else only check existence).

    Returns:
        ``DatasetDict`` with splits ``train``, ``validation``, ``test`` (and ``rest`` when
        ``for_deep_nets``), columns per :data:`ARTEMIS_FEATURES`; ``image`` is decoded lazily.
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    df = read_artemis_csv(csv_path)
    ids = df["art_style"] + df["painting"]
    # As in the release script: with the deep-net option, rows with repetition >= 41 are set aside
    # as "rest" *before* splitting, so the split is drawn over the remaining artworks only; without
    # it, over every artwork. Either way over the whole CSV, before missing images are dropped.
    high = df["repetition"] >= too_high_repetition if for_deep_nets else pd.Series(False, index=df.index)
    split_of = artemis_split_ids(ids[~high], seed=seed)
    df["split"] = ids.map(split_of)
    df.loc[high, "split"] = "rest"
    if for_deep_nets:
        df = _deep_net_filter(df, min_tokens, max_token_percentile)
    if drop_something_else:
        df = df[df["emotion"] != "something else"]

    # Resolve each artwork's file once (NFC/NFD tolerant); unsafe names fail here, before any I/O.
    resolver = NameResolver(image_root)
    paths: dict[tuple[str, str], str] = {}
    for style, painting in set(zip(df["art_style"], df["painting"])):
        check_name(style, what=f"art_style in {csv_path}")
        check_name(painting, what=f"painting in {csv_path}")
        found = resolver.resolve(style, painting + image_extension, what=f"painting in {csv_path}")
        paths[(style, painting)] = str(found if found is not None else os.path.join(image_root, style, painting + image_extension))
    df["image"] = [paths[k] for k in zip(df["art_style"], df["painting"])]

    report = check_files(df["image"], kind="image", verify=verify_images, num_threads=num_threads)
    if not report.ok:
        message = format_missing(
            report.bad, "ArtEmis images", report.checked,
            hint=f"(image_root={image_root}; expected <image_root>/<art_style>/<painting>{image_extension}; "
            "pass on_missing='skip' to drop those rows)",
        )
        if on_missing == "error":
            raise MissingFilesError(message, report.bad)
        n_before = len(df)
        df = df[~df["image"].isin(report.bad)]
        logger.warning("load_artemis: skipped %d rows whose image is missing or undecodable. %s", n_before - len(df), message)

    columns = list(ARTEMIS_FEATURES)
    features = ARTEMIS_FEATURES.copy()
    for extra in OPTIONAL_TEXT_COLUMNS:
        if extra in df.columns:
            features[extra] = Value("string")
            columns.append(extra)
    out = {}
    for raw, name in SPLIT_NAMES.items():
        part = df[df["split"] == raw]
        if raw == "rest" and not for_deep_nets:
            continue
        data = {c: part[c].tolist() for c in columns}
        data["emotion"] = [ARTEMIS_EMOTIONS.index(e) for e in data["emotion"]]
        out[name] = Dataset.from_dict(data, features=features)
    return DatasetDict(out)
