"""`gsv-train fit`: the SoVITS fine-tuning loop and its small stateful helpers.

- `loop.fit(cfg, run_dir)`: the training loop (read it top to bottom).
- `dataset`: cached spectrogram/feature dataset, length-bucketed batches, the typed `Batch`.
- `early_stopping.EarlyStopping`, `schedulers` (plateau / exponential), `checkpointing.CheckpointManager`,
  `metrics` (metrics.jsonl, summary.json, curves.png), `tensorboard.TensorBoardLogger`.
"""
