"""Fine-tune on a user's corrections and check, on images it did not train on, that it helped.

>>> finetune = FineTune(parent, samples, TrainConfig(minutes=2))
>>> result = progress.run(finetune.run())      # yields Stage and TrainUpdate; finetune.stop() ends it
>>> result.verdict()

What a user's corrections can tell about the user's *other* images depends on
how many images they cover, so the held-out part is chosen by that:

- **five images (planes) or more**: ``val_fraction`` of the whole images is held out
  and the rest trained on, in one run;
- **two to four**: a rotation. Each image is held out in turn and a run of
  ``1 / n`` of the time trains on the others (the replay data beside them);
  each run is scored on the image it did not see, and the result is the average
  of the runs' weights, so that every image trains the model kept (runs from one
  parent that stay near it can be averaged, as "model soups" are; the verdict
  judges the runs on the images they did not see, not the average itself);
- **one image**: a band of it is held out (:func:`~.data.split_validation`);
  a weak check, since the band looks like the rest of the image, and the
  verdict says so.

The weights kept are ``TrainConfig.blend`` of the way from the parent's to
the fine-tune's (weight-space ensembling): by default seven tenths of the way.
A blend keeps less of what two images teach by chance (on the parent's own
kind of image, dim nuclei missed that the parent found) but also less of what
they teach. On the transfer benchmark's eighteen two-minute runs the whole
fine-tune gained more on the preparation's other images (+0.045 AP@0.5
against +0.031), but held-out images of the parent's own kind lost 0.021 after one
of them, and at most 0.015 after the blends
(``benchmarks/finetune_transfer.py``, docs/benchmarks.md).
The network's finest layers (``TrainConfig.blend_finest``: a U-Net's two finest
levels of the expanding path and its head, 2% of the default's weights) go only half
of the way. They carry most of what the benchmark's tissue-section fine-tunes cost
on images of other kinds, and part of every gain: on its 24 two-minute runs,
held-out images of the parent's kind lost 0.014 at worst instead of 0.022, another
preparation 0.016 instead of 0.026, and the preparation's other images gained
+0.040 instead of +0.048 (``benchmarks/finetune_blends.py --finest`` rebuilds saved
fine-tunes at other shares).

Then that model and its parent are compared on the replay check and on the
held-out corrections (:mod:`.check`), and the parent stays in use unless the
fine-tune has not forgotten the first and is better on the second. One that
forgot is pulled back to half the share and checked again; if that passes
both checks (each run's, pulled back alike, for the held-out one), it is the
one adopted (``TrainResult.pulled_back``). The replay check comes first, so
that the held-out corrections are predicted once, by the runs of the model
judged.

New images are zoomed for the fine-tune as the model it started from zooms
them: the shipped model that estimates object sizes for the parent (the
parent itself, where it is one) is named in the fine-tune's config
(``ModelConfig.sizing``; ``Segmenter`` runs the size search with it). A
fine-tune's own estimates are as near the true sizes (median 3% off on
kromp2020), but they move image by image, and the zoom alone moves objects
across IoU 0.5: on the transfer benchmark's 40 saved fine-tunes, scored on the
lab's other preparations, 5 of 160 changes were below -0.02 with their own
estimates and 3 with the parent's, and the mean change there was +0.013
rather than +0.010 (docs/benchmarks.md; one of the three, -0.036, is a
fine-tune that finds large nuclei whole only at its own, smaller, zoom).
Where that model sizes the held-out corrections wrong (by more than
:data:`SIZING_TOLERANCE`, geometric mean), the fine-tune, which learnt the
user's objects, estimates sizes itself. Otherwise the held-out check zooms each
held-out image for the fine-tune by the estimate made for the parent
(:func:`sizes_as`): the same model would find the same size again, and that
search is 0.4 to 1.1 s per pair of kromp2020 images on a 2-core CPU, time the
steps get instead.

The time asked for is the whole run's: the steps get what is left after
scoring the parent at the start and reserving as long for the checks at the
end (``TrainResult.timing`` says where it went). The parent's counts on the
replay check crops ship with the default model (:mod:`.check_crops`): on the
CPU the parent predicts only a few of them, to confirm them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from ..evaluation.metrics import InstanceCounts
from ..models.model import Model, builtin_name, weights_digest
from ..models.zoo import check_own
from ..predict.inference import shipped_sizer
from .check import HELD_OUT_IOUS, Comparison, adopt, compare, forgot, prediction_counts
from .check_crops import parent_replay_counts, replay_counts
from .config import TrainConfig
from .data import Sample, split_validation
from .files import median_object_size
from .replay import ReplaySet, load_replay
from .scoring import Score, estimate_sizes, predict_samples
from .trainer import Trainer, TrainResult, TrainUpdate, seconds_left, timed

WHOLE_IMAGES = 5  # from this many images (planes) up, whole ones are held out; below, they take turns
MIN_TUNING_OBJECTS = 200  # held-out objects needed before post-processing thresholds are re-tuned on them
SIZING_TOLERANCE = 1.25  # the parent's size estimates on the held-out corrections, off by more: the fine-tune's own


@dataclass(frozen=True)
class Stage:
    """Work around the training steps, announced as it starts (``seconds``: since the run started)."""

    name: str
    seconds: float


class FineTune:
    """Train ``model`` on ``samples`` (held-out part chosen as the module says) and check the result.

    Parameters
    ----------
    model : Model
        The parent, or an untrained model (``from_scratch``: nothing to compare with, no checks).
    samples : list of Sample
        Every reviewed plane; the held-out part is taken from them here.
    config : TrainConfig
    device : str
    from_scratch : bool
    """

    def __init__(
        self,
        model: Model,
        samples: list[Sample],
        config: TrainConfig,
        *,
        device: str = "auto",
        from_scratch: bool = False,
    ):
        check_own(model, "fine-tune")
        if not samples:
            raise ValueError("no reviewed samples to train on")
        self.model, self.samples, self.config = model, samples, config
        self.device, self.from_scratch = device, from_scratch
        self.folds = plan_folds(samples, config, rotate=not from_scratch)
        self.trainer: Trainer | None = None
        self.result: TrainResult | None = None
        self._stop = False

    def stop(self) -> None:
        """End the run after the current step (thread-safe); the folds not started are skipped."""
        self._stop = True
        if self.trainer is not None:
            self.trainer.stop()

    @property
    def n_train(self) -> int:
        return len(self.folds[0][0])

    @property
    def n_val(self) -> int:
        return sum(len(val) for _, val in self.folds)

    def run(self) -> Generator[Stage | TrainUpdate, None, TrainResult]:
        cfg, parent = self.config, self.model
        start = time.perf_counter()
        timing = {"preparation": 0.0, "steps": 0.0, "validation": 0.0, "parent": 0.0, "thresholds": 0.0, "checks": 0.0}
        replay = load_replay(parent.config) if not self.from_scratch and cfg.replay > 0 else None

        parent_val: list[list[InstanceCounts]] = []  # the parent's counts on each run's held-out images
        parent_seconds: list[float] = []  # and how long they took (about what a score of the run takes)
        parent_sizes: list[tuple[float, float]] = []  # and its estimated and true object size of each held-out image
        parent_estimates: list[list[float | None]] = []  # and its estimates for each run's held-out images
        search_seconds = 0.0  # what those estimates took
        replay_parent: list[InstanceCounts] = []  # and on the replay check crops
        replay_seconds = 0.0  # what predicting those takes here
        if not self.from_scratch and any(val for _, val in self.folds):
            yield Stage("scoring the parent model on the held-out corrections", time.perf_counter() - start)
            with timed(timing, "parent"):
                for _, val in self.folds:
                    begun = time.perf_counter()
                    estimates = estimate_sizes(parent, val, device=self.device)
                    sized = time.perf_counter()
                    search_seconds += sized - begun
                    counts = held_out_counts(parent, val, device=self.device, sizes=parent_sizes,
                                             object_sizes=estimates) if val else []
                    parent_estimates.append(estimates)
                    parent_val.append(counts)
                    parent_seconds.append(time.perf_counter() - sized)
                if replay is not None and replay.check:
                    replay_parent, replay_seconds = parent_replay_counts(parent, replay, device=self.device)
        sizing = None if self.from_scratch else fine_tune_sizing(parent, parent_sizes)
        # Where the fine-tune sizes new images with the model that sized them for the parent, the held-out check
        # zooms its held-out images as the parent's were: the estimates are not searched for again.
        reuse = sizes_as(parent, sizing)
        # The checks at the end predict what the parent predicted here, once more: keep that time for them.
        checks = sum(parent_seconds) + replay_seconds + (0.0 if reuse else search_seconds)
        deadline = start + cfg.minutes * 60 - 1.2 * checks if cfg.minutes is not None else None

        results: list[TrainResult] = []
        history: list[TrainUpdate] = []
        steps = 0
        for i, (train, val) in enumerate(self.folds):
            if self._stop:
                break
            left = len(self.folds) - i
            fold_deadline = None
            if deadline is not None:
                now = time.perf_counter()
                fold_deadline = now + max(deadline - now, 0.0) / left
            fold_steps = math.ceil((cfg.steps - steps) / left) if cfg.steps is not None else None
            tune = cfg.tune_thresholds and len(self.folds) == 1 and _objects(val) >= MIN_TUNING_OBJECTS
            keep = cfg.keep if self.from_scratch else "last"  # what judges a run must not also pick its checkpoint
            fold_config = cfg.model_copy(update={"steps": fold_steps, "tune_thresholds": tune, "keep": keep})
            if len(self.folds) > 1:
                yield Stage(f"run {i + 1} of {len(self.folds)}: training on all but {val[0].name}",
                            time.perf_counter() - start)
            # The parent was scored above, and the checks score the run's last weights: the run need not
            # (unless it tunes thresholds, which starts from that score). Its scores that draw the progress take
            # about what the parent's prediction took (they zoom by the labels: no size search).
            trainer = Trainer(parent, train, val, fold_config, device=self.device, from_scratch=self.from_scratch,
                              deadline=fold_deadline, parent_predictions=[], score_last=self.from_scratch or tune,
                              score_seconds=parent_seconds[i] if parent_seconds else None)
            self.trainer = trainer
            if self._stop:
                trainer.stop()
            generator = trainer.run()
            while True:
                try:
                    update = next(generator)
                except StopIteration as done:
                    results.append(done.value)
                    break
                update = TrainUpdate(
                    steps + update.step,
                    cfg.steps,
                    time.perf_counter() - start,
                    seconds_left(cfg, steps + update.step, time.perf_counter() - start, deadline),
                    update.loss,
                    update.score,
                )
                history.append(update)
                yield update
            steps += results[-1].steps
            for key, value in trainer.timing.items():
                timing[key] += value

        if not results:  # stopped before the first run began
            self.result = TrainResult(parent, parent, None if self.from_scratch else parent, None, None, False, 0,
                                      time.perf_counter() - start, True, timing=timing)
            return self.result
        # The weights kept are ``blend`` of the way from the parent's to the fine-tuned ones (TrainConfig.blend),
        # each run's for the held-out check: the checks judge what the user gets.
        runs = [r.finetuned for r in results]
        if not self.from_scratch:
            runs = [Model(m.network, m.config.model_copy(update={"sizing": sizing})) for m in runs]
        blend = 1.0 if self.from_scratch else cfg.blend
        finest = blend if self.from_scratch or cfg.blend_finest is None else cfg.blend_finest
        models = [toward(parent, m, blend, finest) for m in runs] if min(blend, finest) < 1 else runs
        finetuned = _kept(models)
        user = forgetting = None
        pulled_back = False
        if not self.from_scratch and steps > 0:
            yield Stage("checking the fine-tuned model on the parent's data and on held-out corrections",
                        time.perf_counter() - start)
            # The forgetting check first: a model that forgot is not the one judged on the user's images.
            with timed(timing, "checks"):
                forgetting = self._forgetting_check(finetuned, replay, replay_parent)
            if forgot(forgetting):
                # Half as far from the parent keeps much of what the corrections teach and most of what the
                # parent knew. It is checked the same way, and adopted if it passes both (the time asked for is
                # then overrun by a forgetting check, and a held-out one when it passes the first and fails the second).
                yield Stage(f"the fine-tune forgot some of what the parent knew: checking it {blend / 2:.0%} of the "
                            "way from the parent", time.perf_counter() - start)
                with timed(timing, "checks"):
                    closer = [toward(parent, m, blend / 2, finest / 2) for m in runs]
                    closer_model = _kept(closer)
                    closer_forgetting = self._forgetting_check(closer_model, replay, replay_parent)
                    if not forgot(closer_forgetting):
                        closer_user = self._user_check(closer, parent_val, parent_estimates if reuse else None)
                        if adopt(closer_user, closer_forgetting):
                            finetuned, user, forgetting = closer_model, closer_user, closer_forgetting
                            blend, finest, pulled_back = blend / 2, finest / 2, True
            if not pulled_back:  # the verdict states the held-out gain of the model it judges
                with timed(timing, "checks"):
                    user = self._user_check(models, parent_val, parent_estimates if reuse else None)
        if self.from_scratch:
            improved = results[0].improved if len(results) == 1 else None
        else:
            improved = adopt(user, forgetting) if steps else False
        finetuned = _with_checks(finetuned, user, forgetting, len(results), steps, blend, finest)
        seconds = time.perf_counter() - start
        timing["preparation"] = max(0.0, seconds - sum(timing.values()))
        self.result = TrainResult(
            model=finetuned if improved or self.from_scratch else parent,
            finetuned=finetuned,
            parent=None if self.from_scratch else parent,
            parent_score=Score(user.parent, user.metric, {}) if user else results[0].parent_score,
            best_score=Score(user.finetuned, user.metric, {}) if user else results[0].best_score,
            improved=improved,
            steps=steps,
            seconds=seconds,
            stopped=self._stop or any(r.stopped for r in results),
            history=history,
            user_check=user,
            forgetting_check=forgetting,
            folds=len(results),
            timing=timing,
            blend=blend,
            blend_finest=finest,
            pulled_back=pulled_back,
        )
        return self.result

    def _user_check(
        self, models: list[Model], parent_val: list[list[InstanceCounts]], sizes: list[list[float | None]] | None
    ) -> Comparison | None:
        """Parent (its counts, ``parent_val``) against each run's model on the corrections that run did not
        train on, pooled (``sizes``: each run's held-out images' object sizes where they are the parent's, else
        each model estimates them)."""
        before, after = [], []
        for i, ((_, val), model, parent_counts) in enumerate(zip(self.folds, models, parent_val)):
            if not val:
                continue
            before += parent_counts
            after += held_out_counts(model, val, device=self.device, object_sizes=sizes[i] if sizes else None)
        if not before:
            return None
        if len(models) > 1:
            where = "your corrections, each image held out in turn"
        elif {s.name for s in self.folds[0][1]} & {s.name for s in self.folds[0][0]}:
            where = "a held-out band of your corrected image (a weak check: correct a second image for a better one)"
        else:
            where = "your held-out corrections"
        return compare(where, before, after, seed=self.config.seed)

    def _forgetting_check(
        self, model: Model, replay: ReplaySet | None, replay_parent: list[InstanceCounts]
    ) -> Comparison | None:
        """Parent (its counts, ``replay_parent``) against ``model`` on the replay set's check crops (never
        trained on)."""
        if not replay_parent:
            return None
        return compare(
            "the parent's own training data (forgetting check)",
            replay_parent,
            replay_counts(model, replay, device=self.device),
            seed=self.config.seed,
        )


def held_out_counts(
    model: Model,
    val: list[Sample],
    *,
    device: str = "cpu",
    sizes: list[tuple[float, float]] | None = None,
    object_sizes: list[float | None] | None = None,
) -> list[InstanceCounts]:
    """``model``'s counts on held-out corrections at the held-out check's IoUs (what the held-out check compares),
    each image zoomed as the model estimates (:func:`fine_tune_sizing`), as the user's other images will be, or
    for the ``object_sizes`` estimated already. ``sizes``, if given, gets the estimated and the true (labelled)
    object size of each image that has both."""
    predictions = predict_samples(model.network, val, model.config, device=device, estimate_size=True,
                                  object_sizes=object_sizes)
    if sizes is not None:
        for p, s in zip(predictions, val):
            true = median_object_size([s])
            if p.object_size and true:
                sizes.append((p.object_size, true))
    return prediction_counts(predictions, model.config, thresholds=HELD_OUT_IOUS)


def fine_tune_sizing(parent: Model, sizes: list[tuple[float, float]]) -> str | None:
    """The shipped model that is to estimate object sizes for a fine-tune of ``parent`` (``ModelConfig.sizing``):
    the one that estimates them for the parent (the parent itself, where it ships), unless it sized the held-out
    corrections wrong (``sizes``: estimated and true size of each; their geometric mean ratio beyond
    :data:`SIZING_TOLERANCE`). None: the fine-tune estimates sizes itself."""
    config = parent.config
    if not config.rescales:
        return None
    name = config.sizing or builtin_name(parent)
    ratios = [estimated / true for estimated, true in sizes]
    if name is None or (ratios and abs(float(np.mean(np.log(ratios)))) > math.log(SIZING_TOLERANCE)):
        return None
    return name


def sizes_as(parent: Model, sizing: str | None) -> bool:
    """Whether a fine-tune of ``parent`` whose config names ``sizing`` (:func:`fine_tune_sizing`) estimates object
    sizes with the weights that estimate them for ``parent``: the same sizes, image by image."""
    if sizing is None:
        return False
    shipped, _ = shipped_sizer(Model(parent.network, parent.config.model_copy(update={"sizing": sizing})))
    if shipped is None:
        return False
    parents, _ = shipped_sizer(parent)
    return (parents or parent) is shipped or weights_digest(parents or parent) == weights_digest(shipped)


def plan_folds(
    samples: list[Sample], config: TrainConfig, *, rotate: bool = True
) -> list[tuple[list[Sample], list[Sample]]]:
    """``(train, held out)`` for each run: see the module's docstring (``rotate=False``: one run whatever
    the number of images, as for a model trained from scratch, which nothing is compared with)."""
    rng = np.random.default_rng(config.seed)
    if config.val_fraction <= 0:
        return [(list(samples), [])]
    if rotate and 2 <= len(samples) < WHOLE_IMAGES:
        return [([s for j, s in enumerate(samples) if j != i], [held]) for i, held in enumerate(samples)]
    return [split_validation(samples, config.val_fraction, rng)]


def _kept(models: list[Model]) -> Model:
    """The model kept from the runs' (blended) models: the one, or their average."""
    return models[0] if len(models) == 1 else average_models(models)


def average_models(models: list[Model]) -> Model:
    """One model whose weights (and batch-norm statistics) are the mean of ``models``' (same architecture)."""
    states = [m.network.state_dict() for m in models]
    mean = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            mean[key] = torch.stack([s[key] for s in states]).mean(dim=0)
        else:
            mean[key] = value.clone()
    network = copy.deepcopy(models[0].network)
    network.load_state_dict(mean)
    return Model(network.eval(), models[0].config)


def toward(parent: Model, model: Model, share: float, finest: float | None = None) -> Model:
    """A model whose weights (and batch-norm statistics) are ``share`` of the way from ``parent``'s to ``model``'s
    (same architecture), with ``model``'s config; those of the network's finest layers (``finest_layers``, where
    the network names them) ``finest`` of the way, when given."""
    start, end = parent.network.state_dict(), model.network.state_dict()
    prefixes = finest_layers(model.network) if finest is not None else ()

    def share_of(key: str) -> float:
        return finest if key.startswith(prefixes) else share

    state = {k: start[k] + share_of(k) * (v - start[k]) if v.is_floating_point() else v.clone()
             for k, v in end.items()}
    network = copy.deepcopy(model.network)
    network.load_state_dict(state)
    return Model(network.eval(), model.config)


def finest_layers(network: torch.nn.Module) -> tuple[str, ...]:
    """Name prefixes of the parameters of ``network``'s finest layers (see ``UNet.finest_layers``); none for a
    network that does not name them (a bioimage.io model's), whose blend is then one share throughout."""
    named = getattr(network, "finest_layers", None)
    return tuple(named()) if callable(named) else ()


def _with_checks(
    model: Model, user: Comparison | None, forgetting: Comparison | None, folds: int, steps: int, blend: float,
    finest: float,
) -> Model:
    provenance = dict(model.config.provenance, steps=steps, runs=folds, blend=blend, blend_finest=finest)
    provenance["check"] = {
        "held_out": user.as_dict() if user else None,
        "forgetting": forgetting.as_dict() if forgetting else None,
    }
    return Model(model.network, model.config.model_copy(update={"provenance": provenance}))


def _objects(samples: list[Sample]) -> int:
    return sum(np.unique(s.labels[s.reviewed & (s.labels > 0)]).size for s in samples)
