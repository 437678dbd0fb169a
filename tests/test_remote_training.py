"""Fine-tuning on a dask worker process (a real scheduler and worker on 127.0.0.1): same result, Stop, a lost worker."""

from __future__ import annotations

import logging
import os
import signal

import distributed
import pytest
import torch

from napari_unet import load_model
from napari_unet.core.devices import steps_on_threads
from napari_unet.core.errors import NapariUNetError
from napari_unet.core.progress import run
from napari_unet.core.training import FineTune, Stage, TrainConfig, TrainUpdate
from napari_unet.core.training.remote import RemoteFineTune

from .test_finetune import _kromp_samples



def _cluster():
    return distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        silence_logs=logging.ERROR,
    )


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def parent_and_samples():
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1", "Ganglioneuroblastoma_0"])
    return parent, samples


def _config(**kw) -> TrainConfig:
    return TrainConfig(patch=64, batch_size=2, val_fraction=0, seed=3, **kw)


def test_a_run_on_a_worker_gives_the_model_a_local_run_gives(client, parent_and_samples):
    parent, samples = parent_and_samples
    config = _config(steps=4)
    local = run(steps_on_threads(FineTune(parent, samples, config, device="cpu").run(), 1))
    remote_run = RemoteFineTune(client, parent, samples, config, device="cpu", threads=1)
    updates = []
    remote = run(remote_run.run(), updates.append)

    assert remote_run.worker in client.scheduler_info()["workers"]
    assert [u.step for u in updates if isinstance(u, TrainUpdate)] == [1, 2, 3, 4]
    assert any(isinstance(u, Stage) and remote_run.worker in u.name for u in updates)
    assert remote.steps == local.steps == 4
    assert [u.loss for u in remote.history] == [u.loss for u in local.history]
    mine, theirs = local.finetuned.network.state_dict(), remote.finetuned.network.state_dict()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key
    assert remote.parent is parent  # the local parent, not a copy that travelled
    changed = any(not torch.equal(mine[k], v) for k, v in parent.network.state_dict().items())
    assert changed


def test_stop_ends_a_run_on_a_worker_within_two_steps(client, parent_and_samples):
    parent, samples = parent_and_samples
    remote_run = RemoteFineTune(client, parent, samples, _config(steps=10_000), device="cpu", threads=1)
    steps = []
    for update in remote_run.run():
        if isinstance(update, TrainUpdate):
            steps.append(update.step)
            if len(steps) == 3:
                remote_run.stop()
    result = remote_run.result
    assert result.stopped and result.steps == steps[-1]
    # updates travel in batches, so the worker may be steps ahead of what was shown when Stop was pressed:
    # it ends at most two steps after the stop reaches it
    assert remote_run.stop_seen_at is not None and result.steps <= remote_run.stop_seen_at + 2
    assert client.scheduler_info()["workers"]  # the worker is still there, ready for the next run


def test_a_worker_killed_mid_run_ends_it_with_one_clear_message(parent_and_samples):
    parent, samples = parent_and_samples
    with _cluster() as cluster, distributed.Client(cluster) as client:
        remote_run = RemoteFineTune(client, parent, samples, _config(steps=10_000), device="cpu", threads=1)
        gen = remote_run.run()
        with pytest.raises(NapariUNetError, match="worker .* that trained was lost .* nothing here has changed"):
            for update in gen:
                if isinstance(update, TrainUpdate) and update.step == 2:
                    pid = client.run(os.getpid, workers=[remote_run.worker])[remote_run.worker]
                    os.kill(pid, signal.SIGKILL)
        assert remote_run.result is None


def test_the_train_command_trains_on_the_scheduler_it_is_given(client, tmp_path, capsys):
    import tifffile

    from napari_unet.cli import main

    from .test_cli_train import FLUO, dsb_path

    tifffile.imwrite(tmp_path / "cells.tif", tifffile.imread(dsb_path("images", FLUO))[:192, :192])
    tifffile.imwrite(tmp_path / "cells_labels.tif", tifffile.imread(dsb_path("labels", FLUO))[:192, :192])
    out = tmp_path / "new.safetensors"
    args = ["train", "--images", str(tmp_path / "cells.tif"), "--labels", str(tmp_path / "cells_labels.tif"),
            "-o", str(out), "--from", "scratch", "--width", "4", "--depth", "2", "--steps", "3", "--device", "cpu"]
    code = main(args + ["--scheduler", client.scheduler.address])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "training on the dask worker tcp://127.0.0.1:" in err
    assert load_model(out).config.provenance["steps"] == 3

    assert main(args + ["--scheduler", "gpu-server"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tcp://host:8786" in err[0] 


def test_the_readme_commands_start_a_cluster_to_train_on_and_a_lost_scheduler_is_one_message(
    parent_and_samples, tmp_path
):
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    log = open(tmp_path / "dask.log", "w")
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=log, stderr=log)
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                              stdout=log, stderr=log)
    try:
        parent, samples = parent_and_samples
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=60)
        remote_run = RemoteFineTune(address, parent, samples, _config(steps=10_000), device="cpu", threads=1)
        start = None
        with pytest.raises(NapariUNetError, match=f"lost the dask scheduler {address}.*nothing here has changed"):
            for update in remote_run.run():
                if isinstance(update, TrainUpdate) and update.step == 2:
                    scheduler.kill()
                    start = time.perf_counter()
        assert start is not None and remote_run.result is None
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait()
        log.close()
