"""Word error rate for ASR transcripts."""

from __future__ import annotations

import re

__all__ = ["normalize_text", "word_errors", "word_error_rate"]

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
            "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten", "12": "twelve"}


def normalize_text(text: str) -> list[str]:
    """Lowercase words without punctuation; small digits spelled out (Whisper writes '3')."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return [_NUMBERS.get(w, w) for w in words]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(Levenshtein distance over normalised words, reference length): a corpus WER sums both."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over normalised words, divided by the reference length."""
    errors, words = word_errors(reference, hypothesis)
    if not words:
        return 0.0 if not errors else 1.0
    return errors / words
