"""Property-based tests (hypothesis): the manifest reader, the config loader and the vote give a result or
a clear error for any input, never a crash; the vote does not depend on the order of the branches."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ray_ser.config import ConfigError, LabelConfig, StorageConfig, load_config
from ray_ser.io.manifest import ManifestError, read_inputs
from ray_ser.labels import EMOTIONS
from ray_ser.vote import BranchVote, majority_vote

LOCAL = StorageConfig()
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(data: bytes, suffix: str, policy: str = "error"):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"manifest{suffix}"
        path.write_bytes(data)
        try:
            return read_inputs(str(path), LOCAL, duplicate_ids=policy)
        except ManifestError as exc:
            assert str(path) in str(exc)  # every error names the file
            return None


@QUICK
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]))
def test_any_bytes_as_a_manifest_give_inputs_or_a_manifest_error(data, suffix):
    _read(data, suffix)


_cell = st.one_of(st.text(max_size=12), st.sampled_from(["", "a@1", "@x", "1.5", "nan", "-3", "inf", "  "]))


@QUICK
@given(rows=st.lists(st.tuples(_cell, _cell, _cell, _cell), max_size=25),
       policy=st.sampled_from(["error", "keep_each"]), header=st.booleans())
def test_any_csv_rows_give_one_input_row_each_or_a_manifest_error(rows, policy, header):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header:
        writer.writerow(["utterance_id", "path", "start", "end"])
    writer.writerows(rows)
    result = _read(buffer.getvalue().encode(), ".csv", policy)
    if result is None:
        return
    ids = result.table.column("input_id").to_pylist()
    assert len(ids) == len(set(ids))  # every id unique, derived ones included
    assert result.table.num_rows == len(rows) - (0 if header else 1)  # the first row was the header


_json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=6)


@QUICK
@given(lines=st.lists(st.one_of(
    st.fixed_dictionaries({"utterance_id": _json_value, "path": _json_value}, optional={"start": _json_value}),
    _json_value), max_size=10))
def test_any_json_lines_give_inputs_or_a_manifest_error(lines):
    result = _read("\n".join(json.dumps(line) for line in lines).encode(), ".jsonl")
    if result is not None:
        ids = result.table.column("input_id").to_pylist()
        assert len(ids) == len(set(ids)) == len(lines)


_yaml_scalar = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False),
                         st.text(max_size=10))
_yaml_tree = st.recursive(_yaml_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["asr", "decode", "sink", "ray", "branches", "storage", "vote", "speech",
                                     "family", "train", "resources", "batch_size", "max_segment_s", "x"]),
                    inner, max_size=4)), max_leaves=12)


def _load(text: str | bytes, overrides=()) -> LabelConfig | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            return load_config(str(path), list(overrides))
        except ConfigError:
            return None


@QUICK
@given(tree=_yaml_tree)
def test_any_yaml_tree_gives_a_config_or_a_config_error(tree):
    import yaml

    _load(yaml.safe_dump(tree))


@QUICK
@given(data=st.binary(max_size=200),
       overrides=st.lists(st.text(alphabet="abcdeirstuv._=[]{}:,0123456789 -", max_size=30), max_size=3))
def test_any_bytes_and_overrides_give_a_config_or_a_config_error(data, overrides):
    _load(data, overrides)


def _distribution(draw_weights):
    total = sum(draw_weights) or 1.0
    return [w / total for w in draw_weights]


_vote = st.one_of(st.none(), st.builds(
    lambda label, probs: BranchVote(label, _distribution(probs) if probs else None),
    st.sampled_from(EMOTIONS), st.one_of(st.none(), st.lists(st.floats(0, 1), min_size=len(EMOTIONS),
                                                                 max_size=len(EMOTIONS)))))


@settings(max_examples=300, deadline=None)
@given(votes=st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=4), _vote, max_size=6),
       weights=st.dictionaries(st.text(alphabet="abcdefgh", min_size=1, max_size=4), st.floats(0.01, 5),
                               max_size=6),
       order=st.randoms(use_true_random=False), priority_size=st.integers(0, 6))
def test_the_vote_is_a_result_for_any_votes_and_does_not_depend_on_branch_order(votes, weights, order,
                                                                                 priority_size):
    names = list(votes)
    priority = names[:priority_size]
    shuffled = names[:]
    order.shuffle(shuffled)
    first = majority_vote(votes, weights, priority)
    second = majority_vote({name: votes[name] for name in shuffled}, weights, priority)
    assert first.label == second.label
    if first.label is None:
        assert not any(v is not None for v in votes.values())
        return
    assert first.confidence == pytest.approx(second.confidence, abs=1e-9)
    assert first.agreement == pytest.approx(second.agreement, abs=1e-9)
    assert 0 <= first.agreement <= 1 and first.label in EMOTIONS
