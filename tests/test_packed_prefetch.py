"""Packed training's batches collated ahead on a background thread (NextBatches): each run gets its own batch of
the right step, a run that left the pack gets none, nothing is collated twice, and a collation error surfaces."""

from __future__ import annotations

import pytest
import torch


def test_next_batches_collates_ahead_in_the_background_and_hands_each_run_its_own_batch():
    import threading

    from dept_vl.train.loader import Batch
    from dept_vl.train.packed import NextBatches, PackedRun

    class Plan:  # each run's batch plan: step s of run r is the tensor [r, s]; records which thread collated it
        def __init__(self, run):
            self.run, self.threads = run, []

        def __getitem__(self, step):
            if step == 7:
                raise ValueError("bad example at step 7")
            self.threads.append(threading.current_thread().name)
            return Batch("t", {"x": torch.tensor([self.run, step])})

    plans = [Plan(r) for r in range(3)]
    upcoming = NextBatches([PackedRun(model=None, batches=p) for p in plans], torch.device("cpu"))
    try:
        got = upcoming.get(0, [0, 1, 2])
        assert [b.tensors["x"].tolist() for b in got] == [[0, 0], [1, 0], [2, 0]]
        upcoming.ahead(1, [0, 1, 2])
        upcoming.settle()
        assert all(p.threads[-1].startswith("dept-vl-collate") for p in plans)  # step 1 made in the background
        got = upcoming.get(1, [0, 2])  # run 1 left the pack at the step before
        assert [b.tensors["x"].tolist() for b in got] == [[0, 1], [2, 1]]
        assert [len(p.threads) for p in plans] == [2, 2, 2]  # nothing collated twice
        upcoming.ahead(3, [0, 2])
        got = upcoming.get(2, [0, 2])  # a step other than the one made ahead: collated here, in order
        assert [b.tensors["x"].tolist() for b in got] == [[0, 2], [2, 2]]
        upcoming.ahead(7, [0])
        with pytest.raises(ValueError, match="step 7"):
            upcoming.get(7, [0])
        upcoming.ahead(7, [0])  # a step that will not run (the training stopped): its error is not raised
    finally:
        upcoming.close()
