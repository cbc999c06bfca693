"""Painting names from CSV / JSON files are data, never paths: `../`, absolute paths, NUL bytes, very long or
unencodable names never make a loader read, or a writer write, outside the roots it was given; output file names
derived from names are sanitised.

An audit hook (sys.addaudithook) records every file the process opens or lists while a loader runs, and the
tests assert that none of them lies in `outside/`, the folder the hostile names point at."""

import json
import os
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets_emosem import UnsafeNameError, load_apolo, load_artemis
from datasets_emosem.paths import MAX_NAME_BYTES, NameResolver, check_name, safe_join
from datasets_emosem.pseudo_masks import pseudo_mask_path
from emosem.predict import _unique_stems
from pathlib import Path
from tests.helpers import random_image
from tests.robustness.counters import tried

_ACCESSED: list[str] | None = None
_LOCK = threading.Lock()


def _audit(event, args):
    if _ACCESSED is None or event not in ("open", "os.listdir", "os.scandir", "os.rename", "os.remove", "os.mkdir"):
        return
    path = args[0] if args else None
    if isinstance(path, (str, bytes, os.PathLike)):
        with _LOCK:
            _ACCESSED.append(os.fsdecode(path))


sys.addaudithook(_audit)  # hooks cannot be removed; it records only while _ACCESSED is a list


class FileAccess:
    def __enter__(self):
        global _ACCESSED
        _ACCESSED = []
        return self

    def __exit__(self, *exc):
        global _ACCESSED
        self.paths, _ACCESSED = _ACCESSED, None
        return False

    def inside(self, folder) -> list[str]:
        folder = os.path.realpath(folder)
        return [p for p in self.paths if os.path.realpath(p).startswith(folder + os.sep) or os.path.realpath(p) == folder]


@pytest.fixture
def world(tmp_path):
    """`root/` holds the data; `outside/` holds what hostile names point at (secret.jpg, a CSV, a mask)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "wikiart" / "Impressionism").mkdir(parents=True)
    outside.mkdir()
    random_image(24, 32).save(outside / "secret.jpg")
    np.save(outside / "secret_awe.npy", np.ones((24, 32), np.uint8), allow_pickle=False)
    for i in range(20):  # enough artworks for ArtEmis' train/val/test split
        random_image(12, 16, seed=i).save(root / "wikiart" / "Impressionism" / f"good{i}.jpg")
    return root, outside


def hostile_names(outside: Path) -> list[str]:
    return [
        "../../outside/secret",
        "../outside/secret",
        "..",
        ".",
        "",
        str(outside / "secret"),
        "/etc/passwd",
        "good\x00../../outside/secret",
        "a/b",
        "a\\..\\..\\secret",
        "x" * 300,
        "é" * 200,  # 400 bytes in UTF-8
        "\ud800lone-surrogate",
    ]


def test_artemis_csv_with_hostile_names_never_leaves_the_root(world):
    root, outside = world
    for column in ("painting", "art_style"):
        for name in hostile_names(outside):
            if "\ud800" in name:
                continue  # not representable in a UTF-8 CSV: see the invalid-bytes case below
            rows = [{"art_style": "Impressionism", "painting": f"good{i}", "emotion": "awe",
                     "utterance": f"it is big and calm {i}"} for i in range(20)]
            rows[7][column] = name
            csv = root / "artemis.csv"
            pd.DataFrame(rows).to_csv(csv, index=False, encoding="utf-8")
            with FileAccess() as access, pytest.raises((UnsafeNameError, ValueError)) as info:
                load_artemis(csv, root / "wikiart", verify_images=True, num_threads=1)
            assert access.inside(outside) == [], (name, access.inside(outside))
            assert access.inside(root), "the audit hook saw no file access at all"  # it did read the CSV
            assert isinstance(info.value, UnsafeNameError) and column in str(info.value), str(info.value)
            tried("bad inputs")
    # Bytes that are not UTF-8 (a lone surrogate, as a broken export writes it): an error naming the CSV.
    csv = root / "artemis.csv"
    csv.write_bytes(b"art_style,painting,emotion,utterance\nImpressionism,\xed\xa0\x80bad,awe,calm\n")
    with pytest.raises(ValueError, match="artemis.csv: not a UTF-8 text file"):
        load_artemis(csv, root / "wikiart")
    tried("bad inputs")


def test_apolo_json_with_hostile_names_never_leaves_the_root(world):
    root, outside = world
    apolo = root / "apolo"
    (apolo / "apolo_pixel_map").mkdir(parents=True)
    for name in hostile_names(outside):
        if "\ud800" in name:
            continue  # not representable in a UTF-8 JSON file
        records = [{"painting": name, "emotion": "awe", "utterances": ["calm"], "artemis_id": []}]
        (apolo / "apolo_test.json").write_text(json.dumps(records), encoding="utf-8")
        with FileAccess() as access, pytest.raises(UnsafeNameError, match="APOLO painting"):
            load_apolo(apolo, root / "wikiart", split="test", num_threads=1)
        assert access.inside(outside) == [], (name, access.inside(outside))
        tried("bad inputs")


def test_pseudo_mask_writer_refuses_hostile_names(world):
    root, outside = world
    for name in hostile_names(outside):
        with pytest.raises(UnsafeNameError):
            pseudo_mask_path(root / "masks", name, "awe")
        tried("bad inputs")
    with pytest.raises(UnsafeNameError, match="emotion"):
        pseudo_mask_path(root / "masks", "good", "../awe")
    # The longest accepted name still gives a file name the file system takes.
    name = "p" * (MAX_NAME_BYTES - len("_contentment.npy"))
    path = pseudo_mask_path(root / "masks", name, "contentment")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, np.zeros((2, 2)), allow_pickle=False)
    with pytest.raises(UnsafeNameError, match="bytes long"):
        pseudo_mask_path(root / "masks", name + "p", "contentment")


def test_output_names_from_input_names_are_sanitised(tmp_path):
    """`emosem predict` names outputs after input files: whatever the name, outputs land in the output folder."""
    odd = ["..", ".hidden", "a b", "semi;colon", "new\nline", "tab\tname", "quote\"'", "é-accent", "x" * 240,
           "$(touch pwned)", "back\\slash", "ünïcödé" * 30]
    stems = _unique_stems([Path(f"/data/{n}.jpg") for n in odd] + [Path("/data/a b.png")])
    assert len(set(stems)) == len(stems)
    for stem in stems:
        assert stem and not stem.startswith(".") and len(stem) <= 110
        assert all(c.isalnum() or c in "-_." for c in stem), stem
        for emotion in ("contentment", "grid"):
            name = f"{stem}_{emotion}_mask.png"
            assert len(name.encode()) <= 255 and os.path.dirname(os.path.join(tmp_path, name)) == str(tmp_path)
        tried("bad inputs")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_any_accepted_name_stays_inside_the_root(name):
    root = "/data/root"
    try:
        check_name(name)
    except UnsafeNameError:
        return
    path = os.path.abspath(safe_join(root, name))
    assert os.path.dirname(path) == root and len(os.fsencode(name)) <= MAX_NAME_BYTES


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=3))
def test_name_resolver_never_escapes(tmp_path_factory, names):
    root = tmp_path_factory.getbasetemp() / "resolver-root"
    root.mkdir(exist_ok=True)
    resolver = NameResolver(root)
    try:
        found = resolver.resolve(*names)
    except UnsafeNameError:
        return
    assert found is None or os.path.realpath(found).startswith(os.path.realpath(root))
