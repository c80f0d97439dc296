"""Test helpers: write files in exactly the official GPT-SoVITS structures (without the official package).

- `fake_official_utils()`: a throwaway module object named ``utils`` with an ``HParams`` class that behaves
  like the official one (nested dicts become HParams, item and attribute access). It exists in
  ``sys.modules`` only while a file is written, so loading afterwards proves no ``utils`` import is needed.
- `manifest_state(...)`: random tensors with the shapes/dtypes of a reference state-dict manifest
  (``../shared/reference/sovits_*_G_state.json``): an independent expectation of the official keys.
- `write_official_export`, `write_training_checkpoint`: the official export / ``G_*.pth`` layouts.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.abc
import io
import json
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

HEADERS = {"v2Pro": b"05", "v2ProPlus": b"06"}


@contextlib.contextmanager
def fake_official_utils() -> Iterator[type]:
    """Yield an ``HParams`` class registered as ``utils.HParams`` (removed from sys.modules afterwards)."""
    assert "utils" not in sys.modules, "a real 'utils' module is imported; the test would prove nothing"
    module = types.ModuleType("utils")

    class HParams:
        def __init__(self, **kwargs: Any) -> None:
            for key, value in kwargs.items():
                self[key] = HParams(**value) if type(value) is dict else value

        def keys(self):
            return self.__dict__.keys()

        def items(self):
            return self.__dict__.items()

        def __getitem__(self, key: str) -> Any:
            return getattr(self, key)

        def __setitem__(self, key: str, value: Any) -> None:
            setattr(self, key, value)

        def __contains__(self, key: str) -> bool:
            return key in self.__dict__

    HParams.__module__ = "utils"
    HParams.__qualname__ = "HParams"
    module.HParams = HParams  # type: ignore[attr-defined]
    sys.modules["utils"] = module
    try:
        yield HParams
    finally:
        del sys.modules["utils"]


class ImportSpy(importlib.abc.MetaPathFinder):
    """Records (and blocks) every attempt to import the named modules while installed."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.attempts: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            self.attempts.append(fullname)
            raise ImportError(f"import of {fullname} blocked by test")

    def __enter__(self) -> ImportSpy:
        sys.meta_path.insert(0, self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.meta_path.remove(self)


def read_manifest(reference_dir: Path, version: str, part: str = "G") -> dict[str, Any]:
    return json.loads((reference_dir / f"sovits_{version}_{part}_state.json").read_text())


def manifest_state(
    reference_dir: Path,
    version: str = "v2",
    *,
    part: str = "G",
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """Random tensors with the manifest's keys (official order), shapes and dtypes (or `dtype`)."""
    manifest = read_manifest(reference_dir, version, part)
    gen = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, meta in manifest["state_dict"].items():
        dt = dtype or getattr(torch, meta["dtype"])
        if key.endswith("_codebook.inited"):
            out[key] = torch.ones(meta["shape"], dtype=dt)
        else:
            out[key] = (torch.randn(meta["shape"], generator=gen) * 0.05).to(dt)
    return out


def official_config(reference_dir: Path, version: str = "v2", name: str = "myvoice") -> dict[str, Any]:
    """The hps webui writes for training (``s2_effective_train_configs.json``), placeholders filled in."""
    configs = json.loads((reference_dir / "s2_effective_train_configs.json").read_text())["configs"]
    cfg = copy.deepcopy(configs[version])
    cfg["train"].update(epochs=8, batch_size=4, save_every_epoch=4, pretrained_s2G="", pretrained_s2D="")
    cfg["data"]["exp_dir"] = cfg["s2_ckpt_dir"] = f"logs/{name}"
    cfg["name"] = name
    cfg["pretrain"] = None
    cfg["resume_step"] = None
    return cfg


def official_export_bytes(
    weight: Mapping[str, torch.Tensor], config: dict[str, Any], info: str, version: str = "v2"
) -> bytes:
    """Bytes of an official export: config pickled as ``utils.HParams``; ``05``/``06`` header for Pro."""
    with fake_official_utils() as HParams:
        payload = OrderedDict(
            [
                ("weight", {k: v.half() for k, v in weight.items() if "enc_q" not in k}),
                ("config", HParams(**config)),
                ("info", info),
            ]
        )
        buffer = io.BytesIO()
        torch.save(payload, buffer)
    data = buffer.getvalue()
    header = HEADERS.get(version)
    return header + data[2:] if header else data


def write_official_export(
    path: Path,
    weight: Mapping[str, torch.Tensor],
    config: dict[str, Any],
    info: str = "8epoch_100iteration",
    version: str = "v2",
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(official_export_bytes(weight, config, info, version))
    return path


def write_training_checkpoint(
    path: Path, model_state: Mapping[str, torch.Tensor], iteration: int, learning_rate: float = 1e-4
) -> Path:
    """``utils.save_checkpoint``: {"model", "iteration", "optimizer", "learning_rate"} (plain torch.save)."""
    params = [torch.nn.Parameter(torch.zeros(3))]
    optim = torch.optim.AdamW(params, lr=learning_rate, betas=(0.8, 0.99), eps=1e-9)
    params[0].grad = torch.ones(3)
    optim.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": dict(model_state),
            "iteration": iteration,
            "optimizer": optim.state_dict(),
            "learning_rate": learning_rate,
        },
        path,
    )
    return path
