"""Model adapters: torch, transformers, CTranslate2, vLLM. Nothing here knows Ray."""
