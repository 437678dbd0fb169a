"""Correct & Train on a dask worker (a real scheduler and worker process on 127.0.0.1): the same plot, Stop
and verdict as a local run; a worker killed mid-run gives one message and the widget trains again."""

from __future__ import annotations

import logging
import os
import signal

import distributed
import pytest

from napari_unet.core.training import TrainResult

from .conftest import messages
from .test_train_widget import _choose, _real, _steps, _wait, _widget

pytestmark = pytest.mark.gui


@pytest.fixture
def scheduler():
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def _remote_widget(viewer, tmp_path, address):
    image, labels = _real()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="corrected")
    widget = _widget(viewer, tmp_path)
    _choose(widget.reviewed_combo, "whole")
    _choose(widget.run_on.combo, "dask")
    widget.run_on.address.setText(address)
    widget.run_on.address.editingFinished.emit()
    return widget


def test_training_on_a_dask_worker_plots_checks_and_lists_the_version(
    viewer, qtbot, tmp_path, scheduler, preferences, notifications
):
    widget = _remote_widget(viewer, tmp_path, scheduler.scheduler.address)
    assert preferences.scheduler == scheduler.scheduler.address  # remembered for the next session
    _steps(widget, 4)
    results = []
    widget.train().returned.connect(results.append)
    _wait(qtbot, widget, timeout=120)
    (result,) = results
    assert isinstance(result, TrainResult) and result.steps == 4 and not messages(notifications)
    assert len(widget.plot.loss) == 4
    assert [name.split(":")[0] for name, _ in widget.versions] == ["start", "v1"]
    assert result.verdict() in widget.verdict_label.text()


def test_stop_and_a_killed_worker_on_a_dask_worker(viewer, qtbot, tmp_path, scheduler, notifications):
    widget = _remote_widget(viewer, tmp_path, scheduler.scheduler.address)
    _steps(widget, 100_000)
    results = []
    widget.train().returned.connect(results.append)
    qtbot.waitUntil(lambda: len(widget.plot.loss) >= 2, timeout=120_000)
    widget.stop_button.click()
    _wait(qtbot, widget, timeout=60)
    (result,) = results
    assert result.stopped and result.steps <= len(widget.plot.loss) and len(widget.versions) == 2

    widget.train()
    qtbot.waitUntil(lambda: len(widget.plot.loss) >= 2 and bool(widget._job.trainer.worker), timeout=120_000)
    worker = widget._job.trainer.worker
    os.kill(scheduler.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
    _wait(qtbot, widget, timeout=60)
    (error,) = messages(notifications)
    assert f"the dask worker {worker} that trained was lost" in error and "nothing here has changed" in error
    assert len(widget.versions) == 2 and widget.train_button.isEnabled() and not widget.stop_button.isEnabled()

    _choose(widget.run_on.combo, "here")  # the widget is still usable
    _steps(widget, 2)
    widget.train()
    _wait(qtbot, widget)
    assert len(widget.versions) == 3
