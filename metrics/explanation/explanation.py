"""Explanation metrics: BLEU-1..4, METEOR, ROUGE-L (COCO caption toolkit) and CLIPScore.

Self-contained `evaluate` module (imports nothing from the emosem packages).

- BLEU-1..4 (option "closest"), METEOR 1.5 and ROUGE-L are `pycocoevalcap`'s own scorers, fed as ArtEmis
  feeds them: one hypothesis per (painting, emotion), all human utterances of that (painting, emotion)
  as its reference set, every text pre-tokenised and joined by single spaces.
- Tokenisation follows ArtEmis' preprocessing, in pure Python (pycocoevalcap's PTBTokenizer needs Java and
  nltk is not a dependency): lower-case, unquote 'quoted' words, expand contractions, map the punctuation
  set ArtEmis maps to spaces, then split off clitics ('s) and any remaining symbol as treebank-style tokens.
  ArtEmis' spell-checking (SymSpell + GloVe vocabulary) is not applied.
- METEOR runs `java`; without Java it is reported as None with a `meteor_error` message, the others are
  still computed.
- CLIPScore (Hessel et al., 2021): mean over samples of w * max(cos(image, text), 0), w = 2.5, with the CLIP
  folder given as `clip_model`; the text is prefixed with `clip_prompt_prefix` ("A photo depicts " in
  Hessel's reference implementation). Reported as a fraction in [0, 2.5]; tables print 100 x that.
"""

import re
import shutil
import warnings

import datasets
import evaluate
import numpy as np
import PIL.Image
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from transformers import AutoImageProcessor
from transformers import AutoTokenizer
from transformers import CLIPModel

_CITATION = """\
@inproceedings{hessel2021clipscore,
  title={CLIPScore: A Reference-free Evaluation Metric for Image Captioning},
  author={Hessel, Jack and Holtzman, Ari and Forbes, Maxwell and Le Bras, Ronan and Choi, Yejin},
  booktitle={EMNLP},
  year={2021}
}
@inproceedings{achlioptas2021artemis,
  title={ArtEmis: Affective Language for Visual Art},
  author={Achlioptas, Panos and Ovsjanikov, Maks and Haydarov, Kilichbek and Elhoseiny, Mohamed and Guibas, Leonidas},
  booktitle={CVPR},
  year={2021}
}
"""

_DESCRIPTION = """\
BLEU-1..4, METEOR and ROUGE-L from pycocoevalcap on ArtEmis-style tokens (references grouped per
painting + emotion), and CLIPScore = w * max(cos, 0), w = 2.5, from a local CLIP folder.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of N generated explanations (str).
    references: list of N lists of reference utterances (the (painting, emotion)'s human utterances).
    images (optional): N images (PIL images, file paths or HxWx3 uint8 arrays) for CLIPScore.
    clip_model (optional): path of a local CLIP folder (CLIPModel + tokenizer + image processor).
    clip_prompt_prefix (str, default "A photo depicts "): text put before each explanation for CLIPScore.
    clip_weight (float, default 2.5): w in w * max(cos, 0).
    batch_size (int, default 32): CLIP batch size.
    device (str, default "cpu").
Returns:
    dict with `bleu_1` .. `bleu_4`, `meteor`, `rouge_l` (fractions in [0, 1]; `meteor` None with a
    `meteor_error` if it could not run), `clip_score` (fraction in [0, clip_weight]) and `clip_model`
    when images and clip_model are given, `num_samples`.
"""

CLIP_WEIGHT = 2.5
HESSEL_PROMPT_PREFIX = "A photo depicts "

# Punctuation ArtEmis' preprocessing turns into spaces (before word tokenisation).
_PUNCTUATION_TO_SPACE = str.maketrans({character: " " for character in ".?!,:;/\\-~*_=[]{}$^@|%#<>\u2013\u2014"})
# 'word' or "word" -> word (only when a single word is quoted, as ArtEmis does).
_QUOTED_WORD = re.compile(r"""['"](\w+)['"]""")
_IRREGULAR_CONTRACTIONS = {
    "won't": "will not",
    "can't": "cannot",
    "shan't": "shall not",
    "ain't": "am not",
    "let's": "let us",
    "y'all": "you all",
    "ma'am": "madam",
    "o'clock": "of the clock",
    "'cause": "because",
}
_IRREGULAR_RE = re.compile(r"(?<!\w)(" + "|".join(re.escape(key) for key in _IRREGULAR_CONTRACTIONS) + r")(?!\w)")
# 's means "is" only after these words; elsewhere it is a possessive and becomes its own token.
_IS_WORDS = "he|she|it|that|there|what|where|who|how|when|why|here|so"
_CONTRACTION_RULES = (
    (re.compile(r"(\w)n't\b"), r"\1 not"),
    (re.compile(r"(\w)'re\b"), r"\1 are"),
    (re.compile(r"(\w)'ve\b"), r"\1 have"),
    (re.compile(r"(\w)'ll\b"), r"\1 will"),
    (re.compile(r"(\w)'m\b"), r"\1 am"),
    (re.compile(r"(\w)'d\b"), r"\1 had"),
    (re.compile(r"\b(" + _IS_WORDS + r")'s\b"), r"\1 is"),
)
_TOKEN = re.compile(r"'s\b|\w+|[^\w\s]")


def artemis_tokenize(text):
    """ArtEmis-style tokens of one utterance, joined by single spaces (str -> str)."""
    text = str(text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _QUOTED_WORD.sub(r" \1 ", text)
    text = _IRREGULAR_RE.sub(lambda match: _IRREGULAR_CONTRACTIONS[match.group(1)], text)
    for pattern, replacement in _CONTRACTION_RULES:
        text = pattern.sub(replacement, text)
    text = text.translate(_PUNCTUATION_TO_SPACE)
    return " ".join(_TOKEN.findall(text))


def _validate_texts(predictions, references):
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions but {len(references)} reference lists; expected one list of "
            "reference utterances per generated explanation."
        )
    if len(predictions) == 0:
        raise ValueError("predictions and references are empty; expected at least one explanation.")
    for index, (prediction, refs) in enumerate(zip(predictions, references)):
        if not isinstance(prediction, str):
            raise ValueError(f"predictions[{index}] must be a string; got {type(prediction).__name__}.")
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(
                f"references[{index}] must be a non-empty list of strings (all utterances of the painting and "
                f"emotion); got {refs!r}."
            )


def coco_inputs(predictions, references):
    """pycocoevalcap's (gts, res) dicts: {i: [tokenised refs]}, {i: [tokenised hypothesis]}."""
    gts = {index: [artemis_tokenize(ref) for ref in refs] for index, refs in enumerate(references)}
    res = {index: [artemis_tokenize(prediction)] for index, prediction in enumerate(predictions)}
    return gts, res


def meteor_score(gts, res):
    """Corpus METEOR 1.5 via pycocoevalcap (needs `java` on PATH). Returns (score, error message or None)."""
    if shutil.which("java") is None:
        return None, (
            "METEOR was not computed: it runs METEOR 1.5 on Java and no `java` executable was found on PATH. "
            "Install a Java runtime (e.g. apt-get install default-jre) to get METEOR; the other metrics are unaffected."
        )
    try:
        scorer = Meteor()
        try:
            score, _ = scorer.compute_score(gts, res)
        finally:
            del scorer
    except Exception as error:  # the Java process died or printed something unexpected
        return None, f"METEOR was not computed: running METEOR 1.5 on Java failed ({type(error).__name__}: {error})."
    return float(score), None


def _load_image(image):
    if isinstance(image, PIL.Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        with PIL.Image.open(image) as opened:
            return opened.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"images must be PIL images, paths or (H, W, 3) arrays; got an array of shape {array.shape}.")
    return PIL.Image.fromarray(array.astype(np.uint8)).convert("RGB")


def _features(output):
    # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def clip_cosines(texts, images, clip_model, prompt_prefix=HESSEL_PROMPT_PREFIX, batch_size=32, device="cpu"):
    """cos(image_i, prefix + text_i) for N pairs with a local CLIP folder -> float64 array (N,)."""
    model = CLIPModel.from_pretrained(clip_model).to(device).eval()
    # Tokenizer and image processor loaded separately so any tokenizer class saved in the folder works.
    tokenizer = AutoTokenizer.from_pretrained(clip_model)
    image_processor = AutoImageProcessor.from_pretrained(clip_model)
    max_length = model.config.text_config.max_position_embeddings
    cosines = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch_texts = [prompt_prefix + text for text in texts[start : start + batch_size]]
            batch_images = [_load_image(image) for image in images[start : start + batch_size]]
            text_inputs = tokenizer(
                batch_texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            image_inputs = image_processor(images=batch_images, return_tensors="pt").to(device)
            text_embeds = _features(
                model.get_text_features(input_ids=text_inputs["input_ids"], attention_mask=text_inputs["attention_mask"])
            )
            image_embeds = _features(model.get_image_features(pixel_values=image_inputs["pixel_values"]))
            cos = torch.nn.functional.cosine_similarity(text_embeds.double(), image_embeds.double(), dim=-1)
            cosines.append(cos.cpu().numpy())
    return np.concatenate(cosines)


def compute_explanation_metrics(
    predictions,
    references,
    images=None,
    clip_model=None,
    clip_prompt_prefix=HESSEL_PROMPT_PREFIX,
    clip_weight=CLIP_WEIGHT,
    batch_size=32,
    device="cpu",
):
    """All explanation metrics for N explanations; see the module docstring. Returns the metric dict."""
    predictions = list(predictions)
    references = [list(refs) if not isinstance(refs, str) else refs for refs in references]
    _validate_texts(predictions, references)
    # Check the CLIPScore inputs before the slow scorers run.
    if (images is None) != (clip_model is None):
        raise ValueError("CLIPScore needs both `images` (one per explanation) and `clip_model` (a local CLIP folder).")
    if images is not None:
        images = list(images)
        if len(images) != len(predictions):
            raise ValueError(f"Got {len(images)} images for {len(predictions)} explanations; expected one image each.")
    gts, res = coco_inputs(predictions, references)

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    result = {f"bleu_{n + 1}": float(bleu[n]) for n in range(4)}
    result["meteor"], meteor_error = meteor_score(gts, res)
    if meteor_error is not None:
        warnings.warn(meteor_error)
        result["meteor_error"] = meteor_error
    rouge, _ = Rouge().compute_score(gts, res)
    result["rouge_l"] = float(rouge)

    if images is not None:
        cosines = clip_cosines(predictions, images, clip_model, clip_prompt_prefix, batch_size, device)
        result["clip_score"] = float(np.mean(clip_weight * np.maximum(cosines, 0.0)))
        result["clip_model"] = str(clip_model)
        result["clip_score_definition"] = f"{clip_weight} * max(cos, 0), text prefix {clip_prompt_prefix!r}"
    result["num_samples"] = len(predictions)
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Explanation(evaluate.Metric):
    """`evaluate` wrapper around `compute_explanation_metrics`."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
        )

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Validate counts and reference lists, then run `evaluate`'s compute. Arguments below."""
        if predictions is not None and references is not None:
            _validate_texts(list(predictions), [refs if isinstance(refs, str) else list(refs) for refs in references])
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, **kwargs):
        return compute_explanation_metrics(predictions, references, **kwargs)
