"""`gsv-train fit`: the SoVITS fine-tuning loop and its small stateful helpers.

- `loop.fit(cfg, run_dir)`: the training loop (read it top to bottom); `step.train_step`: one official
  D+G step; `validation.validate`: deterministic validation on the held-out split.
- `dataset`: cached spectrogram/feature dataset, length-bucketed (distributed) batches, the typed `Batch`.
- `early_stopping.EarlyStopping`, `schedulers` (plateau / exponential), `checkpointing.CheckpointManager`,
  `nan_guard.NanGuard`, `rng` (RNG state capture), `metrics` (metrics.jsonl, summary.json, curves.png),
  `tensorboard.TensorBoardLogger`, `distributed` (torchrun/DDP), `precision` (auto/fp32/fp16/bf16),
  `cpu_memory` (glibc malloc tuning for CPU runs).
"""
