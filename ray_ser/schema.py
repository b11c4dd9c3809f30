"""The row contract: the Arrow schema of the labeling job's output.

Columns, in order:

=================  ==========  ==========================================================
utterance_id       string      Unique key of the output row (exactly once per id). Equals
                               input_id for a whole utterance; ``{input_id}@{start_ms}``
                               for a VAD segment of a long recording.
input_id           string      The manifest's utterance_id the row came from. ``@`` marks ids
                               the job derived, so no manifest id contains it
                               (ray_ser/io/manifest.py): ``{id}@copy{n}`` for the n-th copy of
                               a duplicated id (manifest.duplicate_ids=keep_each),
                               ``@line{n}`` for a manifest row without an id.
source             string      The audio's path or URI, as given.
start, end         float64     Seconds within the source (null: whole file).
duration           float64     Seconds of audio the row covers (null if undecodable).
segment_index      int32       0-based index of this segment within its input.
segment_count      int32       Segments the input was split into (1 for most rows).
speaker            string      The manifest's speaker id (columns.speaker), null when none.
speaker_cluster    string      For a clip without a speaker id: the voice group the speaker pass
                               put it in ("~1", "~2", ...; speakers.estimate), whose profile
                               speaker-normalised branches used. Null otherwise.
transcript         string      Whisper transcript (null when ASR did not run or failed).
language           string      Language code used or detected by ASR.
asr_avg_logprob    float32     Mean token log-probability of the transcript.
asr_no_speech_prob float32     Whisper's no-speech probability.
status             string      "ok", or "error" with a reason in ``error``.
error              string      "<stage>: <reason>" for status=error, else null.
error_kind         string      For status=error: "transient" (I/O, a timeout, a lost worker:
                               the next run of the same command retries the input) or
                               "permanent" (undecodable, too short, missing, rejected by a
                               model: kept; ``ray-ser label --retry-errors`` re-runs it).
                               Null for ok rows. See ray_ser/core/errors.py.
warnings           string      Non-fatal problems of a labelled row ("; "-joined), e.g. an ASR
                               failure (speech branches still voted) or a branch that failed.
run_id             string      Identifies the job run that wrote the row.
=================  ==========  ==========================================================

Emotion columns are appended by the branches and the decision; see ``label_fields``:

=================  ==========  ==========================================================
label              string      The final answer: the learned fusion where the profile has
                               one (fusion.method), else the majority vote.
confidence         float32     The final answer's probability (the fusion's), or the vote's
                               mean probability of its winner.
agreement          float32     Share of the voting branches that chose ``label``.
probs              list<f32>   The final distribution over labels.classes, in that order.
vote_label         string      Abhinaya's majority vote, kept whatever decides ``label``.
vote_confidence    float32     The vote winner's mean probability over the voting branches.
<branch>_label     string      Each branch's label (null where it abstained or failed).
<branch>_probs     list<f32>   Each branch's distribution over labels.classes.
=================  ==========  ==========================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["SAMPLE_RATE", "BASE_COLUMNS", "STATUS_OK", "STATUS_ERROR", "TRANSIENT", "PERMANENT", "output_schema",
           "label_fields", "conform"]

# Audio travels between stages, and reaches every model, as 16 kHz mono float32.
SAMPLE_RATE = 16_000

STATUS_OK = "ok"
STATUS_ERROR = "error"
# error_kind values (ray_ser/core/errors.py classifies exceptions into them).
TRANSIENT = "transient"
PERMANENT = "permanent"

BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("utterance_id", "string"),
    ("input_id", "string"),
    ("source", "string"),
    ("speaker", "string"),
    ("speaker_cluster", "string"),
    ("start", "float64"),
    ("end", "float64"),
    ("duration", "float64"),
    ("segment_index", "int32"),
    ("segment_count", "int32"),
    ("transcript", "string"),
    ("language", "string"),
    ("asr_avg_logprob", "float32"),
    ("asr_no_speech_prob", "float32"),
    ("status", "string"),
    ("error", "string"),
    ("error_kind", "string"),
    ("warnings", "string"),
    ("run_id", "string"),
)


def label_fields(branches: tuple[str, ...] | list[str]) -> list[pa.Field]:
    """Emotion columns for the given branch names (empty list for ASR-only runs)."""
    import pyarrow as pa

    if not branches:
        return []
    fields = [
        pa.field("label", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("agreement", pa.float32()),
        pa.field("probs", pa.list_(pa.float32())),
        pa.field("vote_label", pa.string()),
        pa.field("vote_confidence", pa.float32()),
    ]
    for name in branches:
        fields.append(pa.field(f"{name}_label", pa.string()))
        fields.append(pa.field(f"{name}_probs", pa.list_(pa.float32())))
    return fields


def output_schema(branches: tuple[str, ...] | list[str] = ()) -> pa.Schema:
    import pyarrow as pa

    base = [pa.field(name, pa.type_for_alias(kind)) for name, kind in BASE_COLUMNS]
    return pa.schema(base + label_fields(branches))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast the table's columns to the schema; a missing column is all nulls."""
    import pyarrow as pa

    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
