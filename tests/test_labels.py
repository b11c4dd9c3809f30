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


def test_corpus_rules_map_drop_or_name_what_has_no_class():
    from ray_ser.config import DEFAULT_LABEL_RULES
    from ray_ser.labels import map_label

    assert map_label("calm", "ravdess", DEFAULT_LABEL_RULES) == "neutral"
    assert map_label("boredom", "emodb", DEFAULT_LABEL_RULES) is None
    assert map_label("angry", "emodb", DEFAULT_LABEL_RULES) == "angry"
    assert map_label("03", "ravdess", DEFAULT_LABEL_RULES) == "happy"  # the corpus's built-in codes still apply
    assert map_label("frustration", "iemocap", {"*": {"frustration": "angry"}}) == "angry"
    with pytest.raises(ValueError, match="unknown emotion 'boredom'"):
        map_label("boredom", "tess", DEFAULT_LABEL_RULES)
    four = ("neutral", "happy", "sad", "angry")
    assert map_label("excited", "x", {"x": {"excited": "happy"}}, four) == "happy"
    with pytest.raises(ValueError, match="expected one of"):
        map_label("fear", None, {}, four)
