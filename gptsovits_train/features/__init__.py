"""HuBERT content features (`ssl/<id>.npy`): the `prepare` stage and the check `fit` runs.

Public API:
    extract_features(layout, clips, cfg) -> StageResult   post-audio stage of `prepare`
    check_features(layout, clips, *, hidden_size=768)      raises GsvError for missing/mismatched features
    load_hubert, HubertFeaturizer, hubert_input, align_to_spec   building blocks (see `features.hubert`)
"""

from gptsovits_train.features.extract import check_features, extract_features, read_stamp
from gptsovits_train.features.hubert import (
    RANDOM_TINY,
    FeatureAlignmentError,
    HubertFeaturizer,
    HubertLoadError,
    align_to_spec,
    hubert_frames,
    hubert_input,
    load_hubert,
)

__all__ = [
    "RANDOM_TINY",
    "FeatureAlignmentError",
    "HubertFeaturizer",
    "HubertLoadError",
    "align_to_spec",
    "check_features",
    "extract_features",
    "hubert_frames",
    "hubert_input",
    "load_hubert",
    "read_stamp",
]
