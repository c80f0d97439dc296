"""The listening report of a run: `report.html` and its audio under `listen/`.

- `page.build_report(run_dir)`: (re)write the page from the run's files (`gsv-train report`);
- `listen.ListenReport`: the live hook a training run calls after every validation and at the end;
- `listen_files`: `listen/listen.json`, the report clips (`ListenClip`) and the audio files.

Import from the submodules (this package imports nothing, so `train.stage` can use `listen_files`).
"""
