"""A fine-tune on a dask.distributed worker (a GPU server, say), its progress streamed back as it goes.

>>> remote = RemoteFineTune("tcp://gpu-server:8786", parent, samples, TrainConfig(minutes=5))
>>> result = progress.run(remote.run())     # the same Stage and TrainUpdate as a local FineTune; remote.stop()

The parent model, the samples and the settings travel once, with one task, to
one worker, which runs :class:`~.finetune.FineTune` there on its own device
(``device="auto"``: the worker's GPU when it has one). Each update the run
yields is put into a dask ``Queue`` named for the run, and :meth:`run` yields
it here as it arrives. :meth:`stop` sets a dask ``Event`` of the same name,
which a thread of the task waits on: the run then ends after its current step,
as a local one does. The task's result is the :class:`~.trainer.TrainResult`
with its weights on the CPU; the parent never travels back, the local one takes
its place.

A worker that goes away while it trains (killed, out of memory, its machine
gone) or a scheduler that stops answering ends the run with a
:class:`~napari_unet.core.errors.NapariUNetError` that says so: the task is
cancelled, not run again from the start elsewhere, and nothing local has
changed. The workers need napari-unet installed (the same version).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Generator

from ..batch.cluster import connect
from ..devices import steps_on_threads
from ..errors import NapariUNetError
from ..models.model import Model
from .config import TrainConfig
from .data import Sample
from .finetune import FineTune, Stage
from .scoring import Score
from .trainer import TrainResult, TrainUpdate

POLL = 0.25  # seconds between looks at the queue (and at the worker) while nothing arrives


class RemoteFineTune(FineTune):
    """:class:`FineTune` on a worker of the dask scheduler ``scheduler`` (an address, ``local`` or
    ``local:N``, or a ``distributed.Client``); the other arguments are :class:`FineTune`'s.

    ``threads``: torch threads on the worker (None: the worker's own setting).
    """

    def __init__(self, scheduler, *args, threads: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.scheduler, self.threads = scheduler, threads
        self.worker: str | None = None  # the worker's address, once it has started
        self.stop_seen_at: int | None = None  # the worker's last step when the stop reached it
        self._event = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        """End the run on the worker after its current step (thread-safe)."""
        with self._lock:
            self._stop = True
            event = self._event
        if event is not None:
            try:
                event.set()
            except (OSError, TimeoutError):  # the scheduler is gone: run() says so
                pass

    def run(self) -> Generator[Stage | TrainUpdate, None, TrainResult]:
        name = f"napari-unet-train-{uuid.uuid4().hex}"
        with connect(self.scheduler) as client:  # says how to install distributed when it is missing
            from distributed import Event, Queue
            from distributed.client import FutureCancelledError
            from distributed.comm.core import CommClosedError
            from distributed.scheduler import KilledWorker

            queue = Queue(name, client=client)
            with self._lock:
                self._event = Event(name, client=client)
                stopped = self._stop
            if stopped:
                self._event.set()
            # The model and the samples go once, scattered, rather than inside the task.
            model, samples = client.scatter(self.model, hash=False), client.scatter(self.samples, hash=False)
            future = client.submit(
                train_on_worker, model, samples, self.config, self.device, self.from_scratch, self.threads, name,
                key=name, pure=False,
            )
            try:
                yield Stage("sending the model and the training set to a dask worker", 0.0)
                for message in self._messages(client, queue, future):
                    yield message
                result = future.result()
            except CommClosedError as error:
                raise self._lost(f"lost the dask scheduler {self.scheduler}") from error
            except (KilledWorker, FutureCancelledError) as error:  # the task, or what it was sent, is gone
                raise self._lost(f"the dask worker {self.worker} that trained was lost") from error
            finally:
                with contextlib.suppress(RuntimeError, OSError):  # a client already closed has nothing to cancel
                    future.cancel()
                with self._lock:
                    self._event = None
        self.result = _at_home(result, self.model, self.from_scratch)
        return self.result

    def _messages(self, client, queue, future) -> Generator[Stage | TrainUpdate, None, None]:
        """What the worker reports, until its task is done; raises if the worker or scheduler is lost."""
        while True:
            try:
                done = future.done()
                messages = queue.get(batch=True)  # all that waits there, without waiting
                if not messages and not done:
                    self._check_alive(client, future)
            except OSError as error:  # the connection to the scheduler (CommClosedError is one)
                raise self._lost(f"lost the dask scheduler {self.scheduler}") from error
            if not messages and done:  # everything put before the task ended has been read
                return
            for message in messages:
                if message["kind"] == "started":
                    if self.worker is not None:  # the scheduler gave the task to another worker
                        raise self._lost(f"the dask worker {self.worker} that trained was lost")
                    self.worker = message["worker"]
                    yield Stage(f"training on the dask worker {self.worker} ({message['device']})",
                                message["seconds"])
                elif message["kind"] == "stop_seen":
                    self.stop_seen_at = message["step"]
                else:
                    yield _decode(message)
            if not messages:
                time.sleep(POLL)

    def _check_alive(self, client, future) -> None:
        if client.status != "running":
            raise self._lost(f"lost the dask scheduler {self.scheduler}")
        if self.worker is not None and not future.done() and self.worker not in client.scheduler_info()["workers"]:
            raise self._lost(f"the dask worker {self.worker} that trained was lost")

    def _lost(self, what: str) -> NapariUNetError:
        return NapariUNetError(
            f"{what} (killed, out of memory, or its machine gone); the run is abandoned and nothing here "
            "has changed: train again"
        )


def train_on_worker(
    model: Model,
    samples: list[Sample],
    config: TrainConfig,
    device: str,
    from_scratch: bool,
    threads: int | None,
    name: str,
) -> TrainResult:
    """Runs on the worker: the fine-tune, each update put into the run's queue; its result without the parent."""
    from distributed import Event, Queue, get_worker

    from ..devices import resolve_device

    start = time.perf_counter()
    queue, stop = Queue(name), Event(name)
    finetune = FineTune(model, samples, config, device=device, from_scratch=from_scratch)
    queue.put({"kind": "started", "worker": get_worker().address, "device": str(resolve_device(device)),
               "seconds": time.perf_counter() - start})

    last_step = [0]

    def wait_for_stop():
        with contextlib.suppress(OSError):  # the scheduler went away: the run ends with it
            stop.wait()
            finetune.stop()
            queue.put({"kind": "stop_seen", "step": last_step[0]})

    threading.Thread(target=wait_for_stop, daemon=True, name=f"{name}-stop").start()
    try:
        updates = finetune.run() if threads is None else steps_on_threads(finetune.run(), threads)
        while True:
            try:
                update = next(updates)
            except StopIteration as done:
                result = done.value
                break
            if isinstance(update, TrainUpdate):
                last_step[0] = update.step
            queue.put(_encode(update))
    finally:
        stop.set()  # lets the waiting thread end
    return _travelling(result)


def _encode(update: Stage | TrainUpdate) -> dict:
    """An update as plain data for the queue (which carries msgpack, not pickles)."""
    fields = dataclasses.asdict(update)
    return {"kind": type(update).__name__} | fields


def _decode(message: dict) -> Stage | TrainUpdate:
    fields = {k: v for k, v in message.items() if k != "kind"}
    if message["kind"] == "Stage":
        return Stage(**fields)
    if fields.get("score") is not None:
        fields["score"] = Score(**fields["score"])
    return TrainUpdate(**fields)


def _travelling(result: TrainResult) -> TrainResult:
    """The result as it goes home: weights on the CPU, the parent left out (``model`` None when it is the parent)."""
    kept = result.model is not result.parent

    def on_cpu(model: Model | None) -> Model | None:
        return None if model is None else Model(model.network.cpu(), model.config)

    return dataclasses.replace(
        result, model=on_cpu(result.model) if kept else None, finetuned=on_cpu(result.finetuned), parent=None
    )


def _at_home(result: TrainResult, parent: Model, from_scratch: bool) -> TrainResult:
    """The result with the local parent in place of the one the worker had."""
    home = None if from_scratch else parent
    return dataclasses.replace(result, model=result.model if result.model is not None else parent, parent=home)
