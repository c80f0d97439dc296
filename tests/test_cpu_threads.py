"""CPU thread budget of `fit`: cores shared between processes and DataLoader workers."""

from __future__ import annotations

import pytest

from gptsovits_train.train.cpu_memory import cpu_threads


@pytest.mark.parametrize(
    ("configured", "workers", "world", "cores", "expected"),
    [
        (None, 1, 1, 2, 1),  # the 2-core demo: one loader worker leaves one compute thread
        (None, 0, 1, 2, 2),
        (None, 2, 1, 16, 14),
        (None, 2, 2, 16, 6),  # two DDP processes on 16 cores: 8 each, minus 2 workers
        (None, 4, 2, 4, 1),  # never below one
        (3, 4, 2, 4, 3),  # train.cpu_threads wins
    ],
)
def test_thread_budget_table(monkeypatch, configured, workers, world, cores, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads(configured, workers, world, cores=cores) == expected


def test_explicit_omp_num_threads_is_respected(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cpu_threads(None, 1, 1, cores=8) is None
    assert cpu_threads(4, 1, 1, cores=8) == 4
