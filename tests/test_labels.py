import pytest

from ray_ser.labels import CORPUS_MAPPINGS, EMOTIONS, index_of, normalize_label


def test_taxonomy_order_is_msp_podcast():
    assert EMOTIONS == ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "contempt")


def test_every_corpus_mapping_lands_in_the_taxonomy():
    for corpus, mapping in CORPUS_MAPPINGS.items():
        for code, label in mapping.items():
            assert normalize_label(code, corpus) == label


def test_synonyms_and_unknowns():
    assert normalize_label(" Happiness ") == "happy"
    assert index_of("contempt") == 7
    with pytest.raises(ValueError, match="unknown emotion 'calm'"):
        normalize_label("calm")
    with pytest.raises(ValueError, match="unknown corpus"):
        normalize_label("01", "tess")
