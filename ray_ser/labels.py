"""The emotion taxonomy: MSP-Podcast's 8 classes, and mappings from other corpora.

Every label that enters or leaves ray_ser goes through this module, so a corpus
with another label set is mapped once, at the edge, and never inside a stage.
"""

from __future__ import annotations

__all__ = [
    "EMOTIONS",
    "NUM_CLASSES",
    "index_of",
    "normalize_label",
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


def index_of(label: str) -> int:
    """The class index of a canonical label; raises ValueError naming the label set."""
    try:
        return _INDEX[label]
    except KeyError:
        raise ValueError(f"unknown emotion {label!r}; expected one of {list(EMOTIONS)}") from None


def normalize_label(raw: str, corpus: str | None = None) -> str:
    """Map a corpus label (code, synonym or canonical name) onto EMOTIONS."""
    key = raw.strip()
    if corpus is not None:
        mapping = CORPUS_MAPPINGS.get(corpus.lower())
        if mapping is None:
            raise ValueError(f"unknown corpus {corpus!r}; known: {sorted(CORPUS_MAPPINGS)}")
        if key in mapping:
            return mapping[key]
    lowered = key.lower()
    lowered = _SYNONYMS.get(lowered, lowered)
    index_of(lowered)
    return lowered
