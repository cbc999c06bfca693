"""Nothing we read is ever executed: no pickle of user-supplied files anywhere.

A scan of the package's source (modeling_emosem, datasets_emosem, emosem, metrics, examples, benchmarks) for
the ways Python runs code from data: `pickle`/`dill`/`joblib`/`shelve`/`marshal`, `torch.load` without
`weights_only=True`, `np.load` without `allow_pickle=False` or with `allow_pickle=True`, `eval`/`exec`,
`yaml.load` without a safe loader, `trust_remote_code=True` on user-given paths... Then the behaviour itself:
a crafted `.npy` or `.pth` with a code-running pickle is refused by our readers."""

import ast
import os
import re

import numpy as np
import pytest
import torch

from tests.robustness.counters import tried

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCANNED = ("modeling_emosem", "datasets_emosem", "emosem", "metrics", "examples", "benchmarks")


def _sources():
    for top in SCANNED:
        for root, _, names in os.walk(os.path.join(REPO, top)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    yield os.path.relpath(path, REPO), open(path, encoding="utf-8").read()


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def violations(relpath: str, source: str) -> list[str]:
    found = []
    tree = ast.parse(source, filename=relpath)
    for node in ast.walk(tree):
        where = f"{relpath}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"):
                    found.append(f"{where}: imports {module}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        if name in ("eval", "exec", "builtins.eval", "builtins.exec", "compile"):
            found.append(f"{where}: calls {name}()")
        if name in ("torch.load",) or (last == "load" and name.startswith("torch.")):
            value = _keyword(node, "weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                found.append(f"{where}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load"):
            value = _keyword(node, "allow_pickle")
            if not (isinstance(value, ast.Constant) and value.value is False):
                found.append(f"{where}: np.load without allow_pickle=False")
        allow = _keyword(node, "allow_pickle")
        if isinstance(allow, ast.Constant) and allow.value is True:
            found.append(f"{where}: allow_pickle=True")
        if name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
            loader = _keyword(node, "Loader")
            if name != "yaml.load" or loader is None or "Safe" not in _dotted(loader):
                found.append(f"{where}: {name} without SafeLoader")
        if last in ("load_state_dict_from_url", "load_pickle", "read_pickle"):
            found.append(f"{where}: {name}()")
        if name in ("np.save", "numpy.save"):
            value = _keyword(node, "allow_pickle")
            if not (isinstance(value, ast.Constant) and value.value is False):
                found.append(f"{where}: np.save without allow_pickle=False")
        if last == "save_pretrained":
            value = _keyword(node, "safe_serialization")
            if isinstance(value, ast.Constant) and value.value is False:
                found.append(f"{where}: save_pretrained(safe_serialization=False): weights must be safetensors")
    return found


def test_the_source_never_unpickles_or_evaluates_data():
    problems, files = [], 0
    for relpath, source in _sources():
        problems += violations(relpath, source)
        files += 1
    assert files > 40
    assert problems == [], "\n".join(problems)


def test_the_scanner_catches_each_violation():
    bad = {
        "import pickle": "imports pickle",
        "from joblib import load": "imports joblib",
        "torch.load(p)": "weights_only",
        "torch.load(p, weights_only=False)": "weights_only",
        "np.load(p)": "allow_pickle=False",
        "np.load(p, allow_pickle=True)": "allow_pickle=True",
        "np.save(p, a)": "np.save without",
        "eval(text)": "calls eval",
        "exec(code)": "calls exec",
        "yaml.load(f)": "SafeLoader",
        "yaml.unsafe_load(f)": "SafeLoader",
        "pd.read_pickle(p)": "read_pickle",
        "m.save_pretrained(d, safe_serialization=False)": "safetensors",
    }
    for code, words in bad.items():
        found = violations("x.py", code)
        assert any(words in f for f in found), (code, found)
    good = "torch.load(p, map_location='cpu', weights_only=True)\nnp.load(p, allow_pickle=False)\nyaml.safe_load(f)\n" \
           "yaml.load(f, Loader=yaml.SafeLoader)\nnp.save(p, a, allow_pickle=False)\nmodel.eval()\n"
    assert violations("x.py", good) == []


def test_weights_are_saved_as_safetensors(tmp_path):
    from tests.helpers import tiny_model

    tiny_model().save_pretrained(tmp_path)
    names = os.listdir(tmp_path)
    assert "model.safetensors" in names and not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickles_are_refused_by_our_readers(tmp_path):
    from datasets_emosem.apolo import read_heat_map, read_mask
    from datasets_emosem.images import check_files
    from modeling_emosem.convert_sam_checkpoint import load_original_sam_checkpoint

    marker = tmp_path / "pwned"
    npy = tmp_path / "painting_awe.npy"
    np.save(npy, np.array([_Exploit(marker)], dtype=object), allow_pickle=True)  # the attack file
    for reader in (read_mask, read_heat_map):
        with pytest.raises(ValueError, match="pickle"):
            reader(npy)
        tried("bad inputs")
    assert "pickle" in check_files([str(npy)], kind="npy").bad[str(npy)]
    pth = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.x": _Exploit(marker)}, pth)
    with pytest.raises(Exception) as info:
        load_original_sam_checkpoint(str(pth))
    assert "weights_only" in str(info.value) or "Unsupported global" in str(info.value) or "pickle" in str(info.value).lower()
    assert not marker.exists()
    tried("bad inputs", 2)
