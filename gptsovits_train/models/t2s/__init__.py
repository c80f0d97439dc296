"""The GPT (s1) model: `Text2SemanticDecoder` with the official state dict, and greedy decoding.

```python
from gptsovits_train.models.t2s import T2SModelConfig, Text2SemanticDecoder
model = Text2SemanticDecoder(T2SModelConfig())            # official v2 size (77.6 M parameters)
out = model(phoneme_ids, phoneme_lens, semantic_ids, semantic_lens, bert)   # loss (sum CE), top-3 acc
```
"""

from gptsovits_train.models.t2s.decode import GreedyResult, greedy_decode
from gptsovits_train.models.t2s.decoder import (
    BERT_DIM,
    T2SForward,
    T2SModelConfig,
    Text2SemanticDecoder,
    TextMask,
    summed_cross_entropy,
    topk_accuracy,
    topk_hits,
)

__all__ = [
    "BERT_DIM",
    "GreedyResult",
    "T2SForward",
    "T2SModelConfig",
    "Text2SemanticDecoder",
    "TextMask",
    "greedy_decode",
    "summed_cross_entropy",
    "topk_accuracy",
    "topk_hits",
]
