"""Shared helpers for the GPT (s1) tests: the official parity fixture and tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptsovits_train.models.t2s import T2SModelConfig, Text2SemanticDecoder

TINY = T2SModelConfig(embedding_dim=16, hidden_dim=16, head=2, n_layer=1)


def load_fixture(reference_dir: Path) -> dict[str, Any]:
    return torch.load(reference_dir / "t2s_parity_tiny.pt", map_location="cpu", weights_only=True)


def fixture_model(fx: dict[str, Any]) -> Text2SemanticDecoder:
    """The fixture's tiny official model (eval mode), loaded strictly from its official state."""
    model = Text2SemanticDecoder(T2SModelConfig.from_official(fx["config"]["model"]))
    model.load_state_dict({k.removeprefix("model."): v for k, v in fx["state"].items()}, strict=True)
    return model.eval()


def fixture_batch(fx: dict[str, Any], group: str = "batch") -> dict[str, torch.Tensor]:
    prefix = f"{group}/"
    return {k[len(prefix) :]: v for k, v in fx["inputs"].items() if k.startswith(prefix)}


def forward_batch(model: Text2SemanticDecoder, b: dict[str, torch.Tensor], **kw: Any) -> Any:
    return model(
        b["phoneme_ids"],
        b["phoneme_ids_len"],
        b["semantic_ids"],
        b["semantic_ids_len"],
        b["bert_feature"],
        **kw,
    )
