"""Speech LLMs assembled from real pretrained parts, offline (no hub access).

- ``ct2_whisper``: a CTranslate2 Whisper ``model.bin`` read without CTranslate2 and placed
  into a torch Whisper encoder or Qwen2-Audio's audio tower;
- ``selm``: a Qwen2-Audio checkpoint from Whisper base's encoder, a seeded projector and
  SmolLM2-135M-Instruct as the LM (``offline:selm-base``);
- ``audio_cache``: the frozen tower's outputs cached per clip, for cheap SELM training.

Nothing heavy is imported here.
"""
