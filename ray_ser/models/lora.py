"""Saving LoRA-tuned models merged, without disturbing the model that goes on training."""

from __future__ import annotations

import torch

__all__ = ["merged_state_dict"]


def merged_state_dict(peft_model) -> dict[str, torch.Tensor]:
    """The base model's weights with the adapters folded in, under the base model's own names.

    ``merge_and_unload`` would do the folding, but it rewrites the module tree in place: a
    checkpoint taken mid-run that way leaves the optimiser stepping adapters that are no
    longer in the forward pass. Here the adapters are merged, copied out and unmerged.
    """
    peft_model.merge_adapter()
    try:
        state = {}
        for key, value in peft_model.get_base_model().state_dict().items():
            if ".lora_" in key or ".original_module." in key:
                continue
            state[key.replace(".base_layer.", ".").replace(".modules_to_save.default.", ".")] = value.detach().clone()
        return state
    finally:
        peft_model.unmerge_adapter()
