"""SELM trained on real speech: the family's training settings (the projector's own learning rate, its
warmup, Whisper transcripts for corpora without text), a Ray Train run with 2 workers on real RAVDESS
and EmoDB clips, few-shot adaptation on a corpus it did not train on, and the real-speech-selm
profile (real-speech plus a selm branch).

The Ray Train test uses the production code path end to end with the real Whisper-base tower and
SmolLM2's tokenizer; the LM is a small random Llama assembled the same way (``small_selm``), so a
step costs milliseconds instead of seconds. Quality on real speech is what bench/selm_real.py and
bench/few_shot.py measure.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import profile_with, real_speech_rows, write_manifest


def _cached_selm(path, **train):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from ray_ser.branches.speech_llm.cached_tower import CachedTowerSELM
    from ray_ser.branches.speech_llm.settings import SpeechLLMTrain

    model = Qwen2AudioForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32)
    settings = SpeechLLMTrain(base_model=str(path), finetune="lora", lora_rank=2, **train)
    return CachedTowerSELM(model, AutoProcessor.from_pretrained(str(path)), settings), settings


def test_the_projector_trains_at_its_own_rate_and_lora_at_the_base_rate(small_selm):
    from ray_ser.branches.speech_llm.training import SpeechLLMTraining

    model, settings = _cached_selm(small_selm[0], learning_rate=1e-3, projector_lr_scale=4, warmup_fraction=0.3)
    training = SpeechLLMTraining()
    groups = training.parameter_groups(model, settings)
    by_rate = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    projector = {id(p) for n, p in model.named_parameters() if "multi_modal_projector" in n}
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(by_rate) == {1e-3, 4e-3}
    assert by_rate[4e-3] == projector and by_rate[1e-3] == trained - projector and by_rate[1e-3]
    assert training.warmup_fraction(settings) == 0.3


def test_missing_transcripts_come_from_the_profiles_whisper_once(tmp_path, whisper_model, speech_clips):
    from ray_ser.branches.speech_llm.transcripts import fill_transcripts

    clips = speech_clips[-2:]
    expected = [t.text.strip() for t in whisper_model.predict_batch(clips)]
    texts = fill_transcripts(clips + [clips[0]], [None, None, "given"], whisper_model.options, tmp_path)
    assert texts == expected + ["given"] and all(expected)
    stored = sorted((tmp_path / "selm-transcripts").rglob("*.json"))
    assert len(stored) == 2
    written = [p.stat().st_mtime_ns for p in stored]
    # A later run reads them back instead of transcribing again.
    assert fill_transcripts(clips, [None, None], whisper_model.options, tmp_path) == expected
    assert [p.stat().st_mtime_ns for p in stored] == written


def test_the_real_speech_selm_profile_votes_and_fuses_with_selm(tmp_path):
    from ray_ser.config import load_config
    from ray_ser.core.fusion import fit_fusion
    from ray_ser.serve.app import deployment_options
    from ray_ser.stages import vote
    from ray_ser.stages.branch import BranchStage

    cfg = load_config("real-speech-selm")
    selm = cfg.branch("selm")
    assert selm.family == "speech_llm" and selm.train.base_model == "offline:selm-base"
    assert selm.train.finetune == "lora" and selm.train.transcripts == "asr" and 0 < selm.train.transcript_dropout < 1
    assert selm.llm.engine == "vllm_embeds" and not selm.llm.use_transcript  # the speech-only branch votes
    assert set(cfg.branches) == {"whisper", "prosody", "selm"} and cfg.fusion.method == "weights"
    # The speech-text variant is the same checkpoint with one setting changed.
    text = load_config("real-speech-selm", ["branches.selm.llm.use_transcript=true"]).branch("selm")
    assert text.reads_transcript() and text.train == selm.train
    requires, adds = BranchStage.columns("selm", cfg, uses_speakers=False)
    assert "audio" in requires and adds[:2] == ("selm_label", "selm_probs")
    # The fusion `ray-ser train` fits covers selm like the others (here: selm the only informative branch).
    truth = [0, 1, 2, 3, 5, 6] * 2
    k = len(cfg.labels.classes)
    peaked = [[0.9 if i == t else 0.1 / (k - 1) for i in range(k)] for t in truth]
    uniform = [[1.0 / k] * k] * len(truth)
    fusion = fit_fusion("weights", {"whisper": uniform, "prosody": uniform, "selm": peaked}, truth, cfg.labels.classes)
    (tmp_path / "fusion.json").write_text(fusion.to_json())
    decision = vote.plan(load_config("real-speech-selm", [f"fusion.checkpoint={tmp_path / 'fusion.json'}"]))
    assert "selm_probs" in decision.requires and decision.kwargs["fusion"].branches == ("whisper", "prosody", "selm")
    weights = dict(zip(fusion.branches, fusion.weights))
    assert weights["selm"] > max(weights["whisper"], weights["prosody"])
    assert deployment_options(cfg)["branch_selm"]["ray_actor_options"]["num_cpus"] == selm.serve.num_cpus


def test_the_selm_profile_is_the_real_speech_profile_plus_selm():
    """real-speech-selm repeats real-speech's settings (a separate profile so that real-speech's training
    stays minutes): a change to one that the other misses fails here. The one difference on purpose:
    real-speech refits its branches after the fusion, which with SELM would be a second hour of training."""
    from ray_ser.config import load_config

    plain, with_selm = load_config("real-speech").model_dump(), load_config("real-speech-selm").model_dump()
    assert with_selm["branches"].pop("selm")["family"] == "speech_llm"
    assert plain["fusion"].pop("refit") is True and with_selm["fusion"].pop("refit") is False
    assert with_selm == plain


@pytest.mark.slow
def test_selm_trains_on_real_speech_with_two_workers_then_adapts_to_a_new_corpus(tmp_path, ray_cluster, small_selm):
    """RAVDESS speakers train it (Ray Train, DDP over 2 workers, Whisper transcripts, the projector at its
    own rate); k=1 clip per class of an EmoDB speaker go into the prompt and into `ray-ser adapt`."""
    from ray_ser.branches.speech_llm.engines import PromptBuilder, SpeechLLMPredictor
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.branches.speech_llm.shots import load_shots
    from ray_ser.io.labelled import LabelledRow, load_audio
    from ray_ser.labels import EMOTIONS
    from ray_ser.train.loop import adapt_branch, fit_branch

    train_rows = real_speech_rows("ravdess", speakers=2, per_speaker=8)
    shot_rows = real_speech_rows("emodb", speakers=1, per_speaker=12, skip=("boredom",))
    test_rows = real_speech_rows("emodb", speakers=2, per_speaker=3, skip=("boredom",))[3:]  # another speaker
    assert {r["speaker"] for r in test_rows}.isdisjoint({r["speaker"] for r in shot_rows})
    classes = len({r["emotion"] for r in shot_rows})
    branch = {"family": "speech_llm", "llm": {"engine": "transformers", "use_transcript": False},
              "train": {"base_model": str(small_selm[0]), "finetune": "lora", "lora_rank": 2, "epochs": 2,
                        "batch_size": 2, "learning_rate": 2e-3, "projector_lr_scale": 4, "transcripts": "asr",
                        "transcript_dropout": 0.5, "num_workers": 2, "cpus_per_worker": 1},
              "few_shot": {"manifest": str(write_manifest(shot_rows, tmp_path / "shots.csv")), "k": classes,
                           "epochs": 2, "learning_rate": 2e-3}}
    cfg = profile_with({"selm": branch}, tmp_path / "cache", ray={"progress_bars": False})

    trained = fit_branch(cfg, "selm", str(write_manifest(train_rows, tmp_path / "train.csv")), str(tmp_path / "runs"))
    assert len(trained.history) == 2 and all(np.isfinite(h["train_loss"]) for h in trained.history)
    # Both workers shared the Whisper transcripts of the training clips through the cache.
    assert len(list((tmp_path / "cache" / "selm-transcripts").rglob("*.json"))) == len(train_rows)

    items = [(a, None) for a in load_audio([LabelledRow(r["utterance_id"], r["path"], 0) for r in test_rows],
                                           cfg.storage)]
    settings = SpeechLLMConfig(engine="transformers", use_transcript=False)
    base = SpeechLLMPredictor.load(trained.checkpoint, settings)
    assert base.classes == EMOTIONS
    zero = base.predict_batch(items)
    shots = load_shots(cfg.branch("selm").few_shot, cfg.storage, cfg.columns, cfg.labels)
    assert sorted(s.label for s in shots) == sorted({r["emotion"] for r in shot_rows})  # one clip per class
    base.prompts = PromptBuilder(False, shots, base.classes)
    in_context = base.predict_batch(items)
    assert np.allclose(in_context.sum(1), 1, atol=1e-5) and not np.allclose(in_context, zero, atol=1e-4)

    tree = cfg.model_dump()
    tree["branches"]["selm"]["checkpoint"] = trained.checkpoint
    adapted = adapt_branch(type(cfg).model_validate(tree), "selm", str(tmp_path / "adapted"))
    assert len(adapted.history) == 2
    after = SpeechLLMPredictor.load(adapted.checkpoint, settings).predict_batch(items)
    assert np.allclose(after.sum(1), 1, atol=1e-5) and not np.allclose(after, zero, atol=1e-4)
