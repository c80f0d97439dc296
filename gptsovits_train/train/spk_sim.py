"""`val/spk_sim`: speaker similarity of the validation audio, with the ERes2NetV2 speaker embedding.

For each validation clip, validation (`train/validation.py`) generates audio through the inference path;
this module embeds that audio and the real clip over the same span (the first ``n * hop`` samples the
generated audio covers) with ERes2NetV2's speaker-embedding head (`models.eres2netv2.ERes2NetV2.embed`:
TSTP statistics of the fused map → `seg_1`, 192-d for the official model) and returns their cosine
similarity. `val/spk_sim` is the mean over validation clips; higher is better (early stopping and
`best.pt` then use mode "max").

The model is the one file v2Pro/v2ProPlus already use for their sv features
(`pretrained_eres2netv2w24s4ep4.ckpt`, `train.spk_sim_model`); it scores any SoVITS version. Its input
path is the official sv path (32 → 16 kHz windowed-sinc resample, 80-bin Kaldi fbank), always in fp32,
one clip at a time, in eval mode: the same weights and audio always give the same number. Embeddings of
the real clips are computed once and cached. `random-tiny` builds a small seeded random model: the
metric's plumbing can be tested, but its values say nothing about a voice.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from gptsovits_train.features.sv import SvFeaturizer, load_sv_model

LOG = logging.getLogger(__name__)

METRIC = "val/spk_sim"


class SpeakerSimilarity:
    """Cosine similarity of speaker embeddings (see module doc).

    Args:
        model: the sv weights file, or `random-tiny`.
        device: where the sv model runs (the training device).
        sample_rate: rate of the audio it is given (the SoVITS rate, 32 kHz).
    """

    def __init__(self, model: str, device: torch.device | str, sample_rate: int) -> None:
        loaded = load_sv_model(model)
        self.featurizer = SvFeaturizer(loaded, device, fp16=False)
        self.sample_rate = sample_rate
        self._real: dict[tuple[str, int], torch.Tensor] = {}
        LOG.info("val/spk_sim with the speaker-verification model %s", loaded.source)

    def embedding(self, wave: torch.Tensor) -> torch.Tensor:
        """(L,) float audio at `sample_rate` → (embedding_size,) float32 CPU speaker embedding."""
        return self.featurizer.embedding(wave.detach().float(), self.sample_rate)

    def similarity(self, generated: torch.Tensor, real: torch.Tensor, clip_id: str | None = None) -> float:
        """Cosine similarity in [-1, 1] of the embeddings of `generated` and `real`, each (L,) float audio.

        `clip_id`: caches the real clip's embedding under (clip_id, its length).
        Raises:
            ValueError: audio too short for an embedding (~0.1 s).
        """
        key = None if clip_id is None else (clip_id, int(real.shape[-1]))
        ref = self._real.get(key) if key is not None else None
        if ref is None:
            ref = self.embedding(real)
            if key is not None:
                self._real[key] = ref
        gen = self.embedding(generated)
        return float(F.cosine_similarity(gen[None].double(), ref[None].double())[0])
