"""`gsv-train fit`: the training engine, shared by every stage, and the SoVITS stage.

Engine (stage-agnostic; `docs/engine.md`):

- `loop.run_stage(stage, cfg, run_dir)`: the loop (read `_train` top to bottom), `loop.fit`: SoVITS on it;
- `stage.Stage`: what a stage provides (data, models, optimizers, initial weights, step, validation,
  checkpoint content, export); `run_state.RunState`: the position of a run;
- `training_state`: `training_state()` / `restore()`, the one pair used by saves, resume and NaN rollback;
- `monitor.ValidationMonitor`: the one owner of "best" (verdicts read by early stopping, the plateau
  schedule and the checkpoints); `run_checkpoints.RunCheckpoints`: last/best/top-k files of a run folder;
- `signals` (SIGINT/SIGTERM), `run_log.RunLog` (metrics.jsonl, TensorBoard, progress bar, epoch line),
  `nan_guard.NanGuard`, `schedulers` (plateau / exponential), `rng`, `metrics` (summary.json, curves.png),
  `tensorboard`, `distributed` (torchrun/DDP), `precision` (auto/fp32/fp16/bf16), `cpu_memory`.

SoVITS stage: `sovits_stage.SovitsStage`; `step.train_step` (one official D+G step), `validation.validate`
(deterministic validation on the held-out split), `dataset` (cached features, length-bucketed batches).
"""
