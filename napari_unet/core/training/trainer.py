"""Train or fine-tune a model; a generator of typed updates that can be stopped between steps.

>>> trainer = Trainer(model, train_samples, val_samples, TrainConfig(minutes=1))
>>> for update in trainer.run():      # or progress.run(trainer.run())
...     print(update)                 # TrainUpdate: step, loss, score, time left
>>> result = trainer.result           # also returned by run()

``trainer.stop()`` (from any thread) ends the run after the current step and
the run still returns a :class:`TrainResult` with the best model so far.

"Did it help?": the parent model is scored on the validation data first; the
fine-tuned model is adopted only if its best validation score beats the
parent's. Otherwise ``result.model`` is the parent and ``result.improved`` is
False, so a bad fine-tune (say, on wrong labels) is reported, not kept.

With ``config.ema``, what is scored, kept and returned is an exponential
moving average of the weights over the run (batch-norm statistics included)
rather than the weights of the last step: it smooths out the noise of
single steps, which a long run from scratch gains from and a short
fine-tune, whose average would lag behind, does not.

Instances models then get post-processing thresholds tuned on the validation
data (:mod:`.thresholds`) at the end of a run that was not stopped; when they
are, the parent's are tuned on the same data too, so the two are compared on
equal terms.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..models.config import IGNORE_INDEX
from ..devices import mixed_precision, resolve_device
from .losses import WEIGHTED, deep_supervision, distillation, loss_for_outputs
from ..models.model import Model
from .weightmap import unet_weight_map
from .check import Comparison
from .check import verdict as check_verdict
from .config import TrainConfig
from .data import PatchSampler, Sample, share_by_group
from .replay import is_replay, load_replay
from .scoring import Prediction, Score, predict_samples, score_predictions
from .thresholds import tune_thresholds


ENCODER = ("inc.", "downs.")  # a U-Net's contracting path, by parameter name
VALIDATION_SHARE = 0.025  # most of a run's time the scores that only draw its progress may take (keep="last")


@dataclass(frozen=True)
class TrainUpdate:
    """Progress of a run, yielded after each step."""

    step: int
    total_steps: int | None
    seconds: float
    seconds_left: float | None
    loss: float
    score: Score | None = None

    @property
    def fraction(self) -> float:
        if self.seconds_left is None:
            return self.step / self.total_steps if self.total_steps else 0.0
        return self.seconds / max(self.seconds + self.seconds_left, 1e-9)


@dataclass
class TrainResult:
    """The outcome of a run.

    ``model`` is what should be used from now on: the best fine-tuned
    checkpoint if it beat the parent on validation, else the parent.
    """

    model: Model
    finetuned: Model
    parent: Model | None
    parent_score: Score | None
    best_score: Score | None
    improved: bool | None
    steps: int
    seconds: float
    stopped: bool
    history: list[TrainUpdate] = field(default_factory=list)
    user_check: Comparison | None = None
    forgetting_check: Comparison | None = None
    folds: int = 1
    timing: dict[str, float] = field(default_factory=dict)
    blend: float = 1.0  # how far ``finetuned``'s weights are from the parent's toward the fine-tune's (TrainConfig.blend)
    blend_finest: float = 1.0  # and those of its finest layers (TrainConfig.blend_finest)
    pulled_back: bool = False  # ``blend`` is half the one asked for: further along, the fine-tune forgot

    def verdict(self) -> str:
        """For people: did the fine-tune help? (With checks: both comparisons and their intervals.)"""
        if self.user_check is not None or self.forgetting_check is not None:
            return check_verdict(self.user_check, self.forgetting_check, blend=self.blend,
                                 pulled_back=self.pulled_back)
        if self.improved is None:
            return "no validation data: the result could not be checked against the parent model"
        if self.parent_score is None:
            return f"trained from scratch: {self.best_score} on validation"
        if self.improved:
            return f"improved: {self.parent_score} -> {self.best_score} on validation"
        return (
            f"not adopted: the fine-tuned model scored {self.best_score} on validation, "
            f"the parent {self.parent_score}; keeping the parent"
        )


    def time_split(self) -> str:
        """Where the run's time went, e.g. ``120 s: training steps 86%, validation 4%, ...``."""
        total = max(self.seconds, 1e-9)
        names = {"steps": "training steps", "parent": "scoring the parent", "checks": "checks"}
        parts = [f"{names.get(k, k)} {v / total:.0%}" for k, v in self.timing.items() if v > 0.005 * total]
        return f"{self.seconds:.0f} s: " + ", ".join(parts)


@contextlib.contextmanager
def timed(timing: dict[str, float], what: str):
    """Add the seconds the ``with`` block takes to ``timing[what]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timing[what] += time.perf_counter() - start


class Trainer:
    """Train ``model`` (a copy; the parent is never modified) on reviewed samples.

    Parameters
    ----------
    model : Model
        The starting point (parent), or a freshly initialised model.
    train, val : list of Sample
        Training and validation samples (see :func:`~.data.split_validation`).
    config : TrainConfig
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    from_scratch : bool
        ``model`` is untrained: no parent to compare with.
    deadline : float, optional
        ``time.perf_counter()`` value at which training ends, instead of ``config.minutes``
        after the first step (a caller that shares one time budget between runs).
    parent_predictions : list of Prediction, optional
        The parent's predictions of ``val``, when the caller has them already (an empty list: do not score
        the parent, the caller compares the models itself).
    score_last : bool
        Score the last weights on ``val`` when the run ends (False: every ``val_every`` steps only, as
        the caller scores the result itself).
    score_seconds : float, optional
        How long one score of ``val`` is expected to take, when the caller knows (say, from predicting the
        same images with the parent): with ``keep="last"`` the first score then waits until it fits in
        :data:`VALIDATION_SHARE` of the time, as the later ones do (see :meth:`_validation_due`).

    ``timing`` holds the seconds spent on training steps, validation, scoring
    the parent and tuning thresholds once the run is over.
    """

    def __init__(
        self,
        model: Model,
        train: list[Sample],
        val: list[Sample],
        config: TrainConfig,
        *,
        device: str = "auto",
        from_scratch: bool = False,
        deadline: float | None = None,
        parent_predictions: list[Prediction] | None = None,
        score_last: bool = True,
        score_seconds: float | None = None,
    ):
        self.config = config
        self.device = resolve_device(device)
        self.parent = None if from_scratch else model
        self.model_config = model.config
        self.network = copy.deepcopy(model.network).to(self.device)
        self.train_samples, self.val_samples = train, val
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        # An unpadded U-Net takes only some sizes, U^2-Net multiples of 32: the next one up.
        patch = self.network.valid_input_size(config.patch)
        self.replay = load_replay(model.config) if self.parent is not None and config.replay > 0 else None
        self.sampler = PatchSampler(
            with_replay(train, self.replay.train, config.replay, config.sampling) if self.replay else train,
            patch=patch,
            augment=config.augment,
            object_bias=config.object_bias,
            sampling=config.sampling,
            rng=self.rng,
            redraw_rims=model.config.task == "instances" and config.rims == "patch",
        )
        self.loss_fn = loss_for_outputs(config.loss, model.config.network.out_channels)
        # With config.distill, the parent's outputs on the replay patches are targets too (see losses.distillation).
        self.teacher = None
        if self.replay is not None and config.distill > 0:
            self.teacher = copy.deepcopy(model.network).to(self.device).eval().requires_grad_(False)
            self._replayed = np.array([is_replay(s) for s in self.sampler.samples])
        self.deadline = deadline
        self._started = time.perf_counter()
        self.parent_predictions = parent_predictions
        self.score_last = score_last
        self._score_seconds = score_seconds or 0.0  # the last score's time, or the caller's estimate before one
        self.timing = {"steps": 0.0, "validation": 0.0, "parent": 0.0, "thresholds": 0.0}
        self._stop = False
        self.result: TrainResult | None = None

    def stop(self) -> None:
        """Ask the run to end after the current step (thread-safe: a flag)."""
        self._stop = True

    def run(self) -> Generator[TrainUpdate, None, TrainResult]:
        """Train; yield a :class:`TrainUpdate` per step; return the :class:`TrainResult`."""
        cfg = self.config
        parent_predictions = self.parent_predictions
        if parent_predictions is None and self.parent is not None and self.val_samples:
            with self._timed("parent"):
                parent_predictions = self.parent_predictions = self._predict(self.parent.network)
        parent_score = score_predictions(parent_predictions, self.model_config) if parent_predictions else None
        best_score, best_state = None, None
        optimizer = self._optimizer()
        precision = mixed_precision(self.device) if cfg.amp else None
        scaler = torch.amp.GradScaler("cuda", enabled=precision == torch.float16)
        channels_last = self.device.type == "cpu"
        if channels_last:
            self.network.to(memory_format=torch.channels_last)
            if self.teacher is not None:
                self.teacher.to(memory_format=torch.channels_last)
        average = self._averaged()
        kept = average.module if average is not None else self.network
        history: list[TrainUpdate] = []
        start = self._started = time.perf_counter()
        step = 0
        while not self._finished(step, time.perf_counter() - start):
            self._set_lr(optimizer, step, time.perf_counter() - start)
            with self._timed("steps"):
                loss = self._step(optimizer, scaler, precision, channels_last)
                if average is not None:
                    average.update_parameters(self.network)
            step += 1
            elapsed = time.perf_counter() - start
            current = None
            last = self.score_last and self._finished(step, elapsed)
            if self.val_samples and (last or (step % cfg.val_every == 0 and self._validation_due(elapsed))):
                before = self.timing["validation"]
                with self._timed("validation"):
                    current = self._score(kept)
                self._score_seconds = self.timing["validation"] - before
                if cfg.keep == "last":  # the weights of the last step are taken after the loop
                    best_score = current if self.score_last else None  # earlier weights' score is not theirs
                elif best_score is None or current.value > best_score.value:
                    best_score, best_state = current, copy.deepcopy(kept.state_dict())
            update = TrainUpdate(step, cfg.steps, elapsed, seconds_left(cfg, step, elapsed, self.deadline), loss, current)
            history.append(update)
            yield update
        if best_state is None:  # keep="last", or no validation: the last state is the result
            best_state = kept.state_dict()
            if best_score is None and self.val_samples and step and self.score_last:
                with self._timed("validation"):
                    best_score = self._score(kept)
        # A stopped run returns at once: tuning would keep the user waiting seconds after Stop.
        tune = self._tunes_thresholds() and step > 0 and not self._stop
        with self._timed("thresholds"):
            if tune and parent_predictions:
                parent_score = max(parent_score, tune_thresholds(parent_predictions, self.model_config)[1], key=_value)
            finetuned = self._model_from(best_state, step, time.perf_counter() - start, best_score, parent_score)
            if tune:
                finetuned, best_score = self._tuned(finetuned, best_score)
        improved = _improved(parent_score, best_score, has_parent=self.parent is not None)
        adopted = finetuned if (improved or self.parent is None or improved is None) else self.parent
        self.result = TrainResult(
            model=adopted,
            finetuned=finetuned,
            parent=self.parent,
            parent_score=parent_score,
            best_score=best_score,
            improved=improved,
            steps=step,
            seconds=time.perf_counter() - start,
            stopped=self._stop,
            history=history,
        )
        return self.result

    def _timed(self, what: str):
        return timed(self.timing, what)

    def _validation_due(self, elapsed: float) -> bool:
        """Whether a ``val_every`` step validates. With ``keep="last"`` its score only draws the progress (the
        run's result is the last weights): then it waits until, with this score (expected to take as long as the
        last one, or ``score_seconds`` before the first), validation would have had no more than
        :data:`VALIDATION_SHARE` of the time, so that large held-out images do not take the steps' time. A short
        run on large images may draw none."""
        if self.config.keep != "last":
            return True
        expected = self._score_seconds
        return self.timing["validation"] + expected <= VALIDATION_SHARE * (elapsed + expected)

    def _finished(self, step: int, elapsed: float) -> bool:
        cfg = self.config
        if self._stop:
            return True
        if cfg.steps is not None and step >= cfg.steps:
            return True
        if self.deadline is not None:
            return time.perf_counter() >= self.deadline
        return cfg.minutes is not None and elapsed >= cfg.minutes * 60

    def _step(self, optimizer, scaler, precision: torch.dtype | None, channels_last: bool) -> float:
        cfg = self.config
        self.network.train()
        if self.parent is not None and cfg.batch_norm == "frozen":
            for m in self.network.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()  # normalise with the parent's statistics, as prediction will
        images, targets, labels, sources = self.sampler.batch_with_sources(cfg.batch_size)
        x = torch.from_numpy(images).to(self.device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(targets).to(self.device)
        weight = self._weights(labels, targets) if cfg.loss in WEIGHTED else None
        # Networks with side outputs (U^2-Net) are trained on all of them: deep supervision.
        with_sides = getattr(self.network, "forward_with_sides", None)
        with torch.autocast(self.device.type, dtype=precision, enabled=precision is not None):
            sides, logits = with_sides(x) if with_sides is not None else ([], self.network(x))
        margin = (y.shape[-1] - logits.shape[-1]) // 2
        if margin:  # unpadded networks predict the centre of the patch
            y = y[..., margin:-margin, margin:-margin]
            weight = weight[..., margin:-margin, margin:-margin] if weight is not None else None
        kwargs = {"weight": weight} if weight is not None else {}
        if sides:
            loss = deep_supervision([s.float() for s in sides], logits.float(), y, base=self.loss_fn, **kwargs)
        else:
            loss = self.loss_fn(logits.float(), y, **kwargs)
        replayed = self._replayed[sources] if self.teacher is not None else None
        if replayed is not None and replayed.any():
            replayed = torch.from_numpy(replayed).to(self.device)
            with torch.no_grad(), torch.autocast(self.device.type, dtype=precision, enabled=precision is not None):
                teacher = self.teacher(x[replayed])
            mask = y[replayed] != IGNORE_INDEX
            loss = loss + cfg.distill * distillation(logits[replayed].float(), teacher.float(), mask)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    def _weights(self, labels: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """The paper's border weights, from the objects of each patch."""
        cfg = self.config
        maps = [
            unet_weight_map(
                lab,
                w0=cfg.w0,
                sigma=cfg.sigma,
                class_balance=cfg.class_balance,
                contacts=cfg.border == "contacts",
                ignore=t == IGNORE_INDEX,
            )
            for lab, t in zip(labels, targets)
        ]
        return torch.from_numpy(np.stack(maps)).to(self.device)

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        params = self.network.parameters()
        if self.parent is not None and cfg.freeze == "encoder":
            params = self._unfrozen()
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _unfrozen(self) -> list[torch.nn.Parameter]:
        """The parameters a fine-tune trains with ``freeze="encoder"``: all but the contracting path's,
        which stop needing gradients (so the backward pass ends where the expanding path begins)."""
        encoder = [p for n, p in self.network.named_parameters() if n.startswith(ENCODER)]
        if not encoder:
            raise ValueError(f"freeze='encoder' needs a U-Net, whose contracting path is {ENCODER}")
        for p in encoder:
            p.requires_grad_(False)
        return [p for p in self.network.parameters() if p.requires_grad]

    def _set_lr(self, optimizer: torch.optim.Optimizer, step: int, elapsed: float) -> None:
        cfg = self.config
        if cfg.schedule == "constant":
            return
        progress = step / cfg.steps if cfg.steps else 0.0
        budget = self._budget()
        if budget is not None:
            progress = max(progress, elapsed / budget)
        warmup = min(1.0, (step + 1) / 20)
        lr = cfg.lr * warmup * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        for group in optimizer.param_groups:
            group["lr"] = lr

    def _budget(self) -> float | None:
        """Seconds of training from the first step to the end set by ``deadline`` or ``config.minutes``."""
        if self.deadline is not None:
            return max(self.deadline - self._started, 1e-9)
        return self.config.minutes * 60 if self.config.minutes is not None else None

    def _averaged(self) -> AveragedModel | None:
        """The moving average of the weights (``config.ema``), or None when it is off."""
        if not self.config.ema:
            return None
        return AveragedModel(self.network, multi_avg_fn=get_ema_multi_avg_fn(self.config.ema), use_buffers=True)

    def _predict(self, network: torch.nn.Module) -> list[Prediction]:
        return predict_samples(network, self.val_samples, self.model_config, device=self.device)

    def _score(self, network: torch.nn.Module) -> Score:
        return score_predictions(self._predict(network), self.model_config)

    def _tunes_thresholds(self) -> bool:
        return self.config.tune_thresholds and self.model_config.task == "instances" and bool(self.val_samples)

    def _tuned(self, model: Model, score: Score | None) -> tuple[Model, Score | None]:
        """``model`` with the thresholds that score best on the validation data, and that score."""
        thresholds, tuned = tune_thresholds(self._predict(model.network), model.config)
        if score is not None and tuned.value <= score.value:
            return model, score
        provenance = dict(model.config.provenance, thresholds_tuned=thresholds.model_dump())
        provenance["validation"] = {"score": tuned.value, "metric": tuned.name}
        config = model.config.model_copy(update={"thresholds": thresholds, "provenance": provenance})
        return Model(model.network, config), tuned

    def _model_from(self, state, steps: int, seconds: float, best: Score | None, parent: Score | None) -> Model:
        network = copy.deepcopy(self.network).cpu()
        network.load_state_dict({k: v.cpu() for k, v in state.items()})
        network.to(memory_format=torch.contiguous_format).eval()
        previous = self.parent.config.provenance if self.parent is not None else None
        provenance = {
            "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "data": sorted({s.name for s in self.train_samples + self.val_samples}),
            "steps": steps,
            "seconds": round(seconds, 1),
            "device": str(self.device),
            "train_config": self.config.model_dump(mode="json"),
            "validation": {"score": best.value, "metric": best.name} if best else None,
            "parent": {"validation": parent.value if parent else None, "provenance": previous}
            if self.parent is not None
            else None,
        }
        return Model(network, self.model_config.model_copy(update={"provenance": provenance}))


def seconds_left(config: TrainConfig, step: int, elapsed: float, deadline: float | None) -> float | None:
    """Seconds until a run of ``config`` ends after ``step`` steps in ``elapsed`` seconds: by its steps,
    or its ``deadline`` (a ``time.perf_counter()`` value), else its minutes; None when nothing bounds it."""
    left = []
    if config.steps is not None and step:
        left.append(elapsed / step * (config.steps - step))
    if deadline is not None:
        left.append(deadline - time.perf_counter())
    elif config.minutes is not None:
        left.append(config.minutes * 60 - elapsed)
    return max(0.0, min(left)) if left else None


def with_replay(train: list[Sample], replay: list[Sample], share: float, sampling: str) -> list[Sample]:
    """``train`` and ``replay`` samples, weighted so that ``share`` of the patches come from ``replay``."""
    groups = ["corrections"] * len(train) + ["replay"] * len(replay)
    return share_by_group(list(train) + list(replay), groups, {"replay": share}, sampling)


def _value(score: Score) -> float:
    return score.value


def _improved(parent: Score | None, best: Score | None, *, has_parent: bool) -> bool | None:
    if not has_parent:
        return True if best is not None else None
    if parent is None or best is None:
        return None
    return best.value > parent.value


def warm_up() -> None:
    """Do once what a first training run would do first: import and initialise what it uses.

    The first optimizer call imports ``torch._dynamo`` and its dependencies
    (hundreds of modules, seconds; a few of them hold the interpreter lock for
    a couple of hundred milliseconds), and the first loss, sampler and scoring
    calls have costs of their own. A viewer runs this in a worker when its
    training widget opens, so the first run neither waits for it nor makes the
    viewer stutter. Two steps of a tiny network on a synthetic 96 x 96 image.
    """
    from ..models.config import ModelConfig
    from .data import make_samples

    model = Model.from_config(ModelConfig(network={"depth": 1, "width": 2}, tile=64, overlap=16))
    labels = np.zeros((96, 96), np.uint16)
    labels[20:40, 20:40], labels[50:80, 45:70] = 1, 2
    image = (labels > 0).astype(np.float32) + np.random.default_rng(0).normal(0, 0.1, labels.shape)
    samples = make_samples(image.astype(np.float32), labels, model.config)
    config = TrainConfig(steps=2, patch=32, batch_size=1, val_every=2, val_fraction=0.0)
    trainer = Trainer(model, samples, samples, config, device="cpu")
    for _ in trainer.run():
        pass
