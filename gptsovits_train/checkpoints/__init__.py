"""Reading official GPT-SoVITS weight files and our own checkpoints, safely.

- `load_torch_file` / `load_bytes`: ``torch.load(weights_only=True)`` with one extra allowed name, the
  official ``utils.HParams`` config class (mapped to our `OfficialHParams`); official ``00``-``06`` headers
  are handled; foreign code is never imported or executed.
- `read_weights`: any SoVITS file (official export, pretrained, ``G_*.pth``/``D_*.pth``, our run
  checkpoints and safetensors exports) as a typed `WeightsFile`; `read_run_checkpoint` for ``fit`` files.
- `detect_sovits_version`: the official version rules (pretrained md5, header, size); `loader_version`
  adds the loaders' text-embedding refinement.
- `compare_state_dicts` / `load_state_dict_strict`: key/shape reports, failing unless the caller names the
  allowed differences (``EXPORT_DROPPED_PATTERNS`` for exports).
"""

from gptsovits_train.checkpoints.files import (
    RunCheckpoint,
    WeightsFile,
    parse_info,
    read_run_checkpoint,
    read_weights,
    state_role,
)
from gptsovits_train.checkpoints.official import (
    OFFICIAL_MODEL_KEYS,
    config_hash,
    model_audio_from_official,
    official_config_from_ours,
    official_model_defaults,
)
from gptsovits_train.checkpoints.serialization import (
    FileKind,
    OfficialHParams,
    load_bytes,
    load_torch_file,
    sniff_file,
    to_plain,
)
from gptsovits_train.checkpoints.state_dict import (
    EXPORT_DROPPED_PATTERNS,
    KeyReport,
    compare_state_dicts,
    load_state_dict_strict,
)
from gptsovits_train.checkpoints.version import (
    OfficialVersion,
    detect_sovits_version,
    infer_version_from_weights,
    loader_version,
    version_from_header_and_size,
)

__all__ = [
    "EXPORT_DROPPED_PATTERNS",
    "OFFICIAL_MODEL_KEYS",
    "FileKind",
    "KeyReport",
    "OfficialHParams",
    "OfficialVersion",
    "RunCheckpoint",
    "WeightsFile",
    "compare_state_dicts",
    "config_hash",
    "detect_sovits_version",
    "infer_version_from_weights",
    "load_bytes",
    "load_state_dict_strict",
    "load_torch_file",
    "loader_version",
    "model_audio_from_official",
    "official_config_from_ours",
    "official_model_defaults",
    "parse_info",
    "read_run_checkpoint",
    "read_weights",
    "sniff_file",
    "state_role",
    "to_plain",
    "version_from_header_and_size",
]
