"""The emotion taxonomy: MSP-Podcast's 8 classes, and mappings from other corpora.

Every label that enters or leaves ray_ser goes through this module, so a corpus
with another label set is mapped once, at the edge, and never inside a stage.
"""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = [
    "EMOTIONS",
    "NUM_CLASSES",
    "DROP",
    "index_of",
    "normalize_label",
    "map_label",
    "CORPUS_MAPPINGS",
]

# Order matters: it is the index order of every probability vector.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "surprise",
    "fear",
    "disgust",
    "contempt",
)
NUM_CLASSES = len(EMOTIONS)
_INDEX = {name: i for i, name in enumerate(EMOTIONS)}

# Corpora label their emotions with codes or synonyms; each maps onto EMOTIONS.
# A class a corpus lacks is simply absent; a class outside the taxonomy
# (e.g. RAVDESS "calm") maps to its nearest MSP-Podcast class, as is customary.
CORPUS_MAPPINGS: dict[str, dict[str, str]] = {
    "ravdess": {
        "01": "neutral", "02": "neutral", "03": "happy", "04": "sad",
        "05": "angry", "06": "fear", "07": "disgust", "08": "surprise",
    },
    "crema-d": {
        "NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry",
        "FEA": "fear", "DIS": "disgust",
    },
    "iemocap": {
        "neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad",
        "ang": "angry", "fru": "angry", "sur": "surprise", "fea": "fear",
        "dis": "disgust",
    },
    "msp-podcast": {
        "N": "neutral", "H": "happy", "S": "sad", "A": "angry",
        "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
    },
}

_SYNONYMS = {
    "neu": "neutral", "hap": "happy", "happiness": "happy", "joy": "happy",
    "sadness": "sad", "anger": "angry", "ang": "angry", "surprised": "surprise",
    "fearful": "fear", "disgusted": "disgust", "contemptuous": "contempt",
}


# A rule's target that means "leave rows with this label out" (training, few-shot, scoring).
DROP = "drop"


def index_of(label: str, classes: Sequence[str] = EMOTIONS) -> int:
    """The class index of a label in the taxonomy; raises ValueError naming the label set."""
    try:
        return _INDEX[label] if classes is EMOTIONS else list(classes).index(label)
    except (KeyError, ValueError):
        raise ValueError(f"unknown emotion {label!r}; expected one of {list(classes)}") from None


def normalize_label(raw: str, corpus: str | None = None, classes: Sequence[str] = EMOTIONS) -> str:
    """Map a corpus label (code, synonym or canonical name) onto the taxonomy; ValueError if it has no class."""
    key = raw.strip()
    if corpus is not None:
        mapping = CORPUS_MAPPINGS.get(corpus.lower())
        if mapping is None:
            raise ValueError(f"unknown corpus {corpus!r}; known: {sorted(CORPUS_MAPPINGS)}")
        if key in mapping:
            return mapping[key]
    lowered = key.lower()
    if lowered not in classes:
        lowered = _SYNONYMS.get(lowered, lowered)
    index_of(lowered, classes)
    return lowered


def map_label(raw: str, corpus: str | None, rules: Mapping[str, Mapping[str, str]],
              classes: Sequence[str] = EMOTIONS) -> str | None:
    """A manifest label as a class of the taxonomy, or None where the corpus's rule drops it.

    rules maps a corpus name to {raw label: class or "drop"}; a rule of the corpus "*" applies to
    every corpus. A label no rule names goes through the corpus's built-in codes and the synonyms
    (``normalize_label``); ValueError if it still has no class.
    """
    key = raw.strip()
    for scope in (corpus.lower() if corpus else None, "*"):
        rule = rules.get(scope, {}) if scope else {}
        target = rule.get(key, rule.get(key.lower()))
        if target is not None:
            return None if target == DROP else normalize_label(target, None, classes)
    codes = corpus if corpus and corpus.lower() in CORPUS_MAPPINGS else None  # a corpus with rules alone has none
    return normalize_label(key, codes, classes)
