"""Training losses that skip unannotated pixels and accept pixel weights.

Every loss has the signature of :class:`Loss`: ``logits (B, K, H, W)``,
``target (B, H, W)`` integer class ids where ``ignore_index`` marks pixels
without annotation, and optional ``weight (B, H, W)`` pixel weights (for
instance the U-Net border map of :mod:`napari_unet.core.training.weightmap`). The
result is a scalar mean over annotated pixels, ``sum(w * l) / sum(w)`` when
weighted, so scaling all weights changes nothing.

Unannotated pixels never reach the arithmetic: their logits are replaced by
zeros before the loss is computed, so whatever they hold (even inf) changes
neither the loss nor any gradient, and a batch with no annotated pixel gives
a zero that is still part of the graph (``backward()`` works and gives zero
gradients) instead of NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.config import IGNORE_INDEX


class Loss(Protocol):
    """What every loss here is: ``loss(logits, target, *, weight=None, ignore_index=255) -> scalar``."""

    def __call__(
        self, logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int | None = IGNORE_INDEX
    ) -> Tensor: ...


def cross_entropy(
    logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int | None = IGNORE_INDEX
) -> Tensor:
    """Softmax cross-entropy, averaged over annotated pixels.

    Parameters
    ----------
    logits : Tensor of shape (B, K, H, W), float, K >= 2
        Class scores before the softmax.
    target : Tensor of shape (B, H, W), integer (int64)
        Class ids in ``[0, K)``, or ``ignore_index`` for unannotated pixels.
    weight : Tensor of shape (B, H, W), float, optional
        Non-negative pixel weights.
    ignore_index : int or None

    Returns
    -------
    Tensor of shape (), the mean (weighted: ``sum(w * l) / sum(w)``).
    """
    logits, target, w = _prepare(logits, target, weight, ignore_index, "cross_entropy", classes=None)
    if logits.shape[1] < 2:
        raise ValueError(
            f"cross_entropy needs K >= 2 class logits, got {logits.shape[1]} channel; "
            "use bce_with_logits for one-channel outputs"
        )
    return _weighted_mean(F.cross_entropy(logits, target, reduction="none"), w)


def weighted_cross_entropy(
    logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int | None = IGNORE_INDEX
) -> Tensor:
    """:func:`cross_entropy` weighted by the U-Net border map, which ``weight`` must be.

    The map comes from :func:`napari_unet.core.training.weightmap.unet_weight_map`
    (one per image, stacked to ``(B, H, W)``). Parameters as for
    :func:`cross_entropy`, with ``weight`` required.
    """
    _require_weight(weight, "weighted_cross_entropy")
    return cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)


def bce_with_logits(
    logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int | None = IGNORE_INDEX
) -> Tensor:
    """Binary cross-entropy of a one-channel output, averaged over annotated pixels.

    Parameters
    ----------
    logits : Tensor of shape (B, 1, H, W), float
        Foreground score before the sigmoid.
    target : Tensor of shape (B, H, W), integer (int64)
        0 (background), 1 (foreground) or ``ignore_index``.
    weight : Tensor of shape (B, H, W), float, optional
    ignore_index : int or None

    Returns
    -------
    Tensor of shape ()
    """
    logits, target, w = _prepare(logits, target, weight, ignore_index, "bce_with_logits", classes=2)
    if logits.shape[1] != 1:
        raise ValueError(f"bce_with_logits needs one-channel logits (B, 1, H, W), got {tuple(logits.shape)}")
    per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), reduction="none")
    return _weighted_mean(per_pixel, w)


def dice_loss(
    logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int | None = IGNORE_INDEX
) -> Tensor:
    """One minus the mean soft Dice over the classes present in the annotated pixels.

    For class ``c`` with probabilities ``p`` (softmax; for K == 1 the sigmoid
    gives the foreground and ``1 - p`` the background, two classes) and
    one-hot target ``g``, summed over the batch's annotated pixels with weights
    ``w``: ``Dice_c = 2 sum(w p g) / (sum(w p) + sum(w g))``. Classes absent
    from the annotated target are left out, so a crop without a class is not
    punished for predicting a little of it nor rewarded for predicting none.

    Parameters
    ----------
    logits : Tensor of shape (B, K, H, W), float
    target : Tensor of shape (B, H, W), integer (int64)
        Class ids in ``[0, max(K, 2))`` or ``ignore_index``.
    weight : Tensor of shape (B, H, W), float, optional
    ignore_index : int or None

    Returns
    -------
    Tensor of shape (), in [0, 1].
    """
    logits, target, w = _prepare(logits, target, weight, ignore_index, "dice_loss", classes=None)
    if logits.shape[1] == 1:
        fg = torch.sigmoid(logits)
        prob = torch.cat([1 - fg, fg], dim=1)
    else:
        prob = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target, prob.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
    w = w[:, None]
    inter = (w * prob * onehot).sum(dim=(0, 2, 3))
    total = (w * prob).sum(dim=(0, 2, 3)) + (w * onehot).sum(dim=(0, 2, 3))
    present = (w * onehot).sum(dim=(0, 2, 3)) > 0
    # Absent classes get a safe denominator: a 0/0 would put NaN in the gradient.
    dice = 2 * inter / torch.where(present, total, torch.ones_like(total))
    return ((1 - dice) * present).sum() / present.sum().clamp_min(1)


def ce_dice(
    logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int | None = IGNORE_INDEX
) -> Tensor:
    """:func:`cross_entropy` (:func:`bce_with_logits` for K == 1) plus :func:`dice_loss`.

    Parameters and result as for :func:`dice_loss`.
    """
    return _pixel_loss(logits)(logits, target, weight=weight, ignore_index=ignore_index) + dice_loss(
        logits, target, weight=weight, ignore_index=ignore_index
    )


def weighted_ce_dice(
    logits: Tensor, target: Tensor, *, weight: Tensor | None = None, ignore_index: int | None = IGNORE_INDEX
) -> Tensor:
    """:func:`weighted_cross_entropy` plus an unweighted :func:`dice_loss`.

    The pixel weights (required) steer the cross-entropy only; the Dice term
    scores the overlap of each class as :func:`ce_dice` does. For K == 1 the
    cross-entropy is :func:`bce_with_logits`. Parameters and result as for
    :func:`weighted_cross_entropy`.
    """
    _require_weight(weight, "weighted_ce_dice")
    return _pixel_loss(logits)(logits, target, weight=weight, ignore_index=ignore_index) + dice_loss(
        logits, target, ignore_index=ignore_index
    )


def distillation(logits: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """How far ``logits`` predict from ``teacher``'s: the mean Kullback-Leibler divergence over ``mask``'s pixels.

    Learning without forgetting (Li & Hoiem 2016) and dark experience replay
    (Buzzega et al. 2020) train a network to keep its parent's outputs on the
    parent's data, which holds more of what it knew than the labels of a few
    crops do (how sure it was, and of what, on every pixel).

    Parameters
    ----------
    logits, teacher : Tensor of shape (B, K, H, W), float
        The network's class scores and its parent's (no gradient needed); for
        K == 1 the sigmoid gives the foreground, as in :func:`bce_with_logits`.
    mask : Tensor of shape (B, H, W), bool
        The pixels to compare (those of the image; a crop's padding is left out).

    Returns
    -------
    Tensor of shape (), >= 0; a zero in the graph when ``mask`` is empty.
    """
    if logits.shape != teacher.shape or mask.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"distillation needs logits and teacher of one shape (B, K, H, W) and a mask (B, H, W), got "
            f"{tuple(logits.shape)}, {tuple(teacher.shape)} and {tuple(mask.shape)}"
        )
    if logits.shape[1] == 1:
        logits, teacher = (torch.cat([torch.zeros_like(t), t], dim=1) for t in (logits, teacher))
    log_p = torch.log_softmax(logits, dim=1)
    log_q = torch.log_softmax(teacher.detach(), dim=1)
    per_pixel = (log_q.exp() * (log_q - log_p)).sum(dim=1)
    weight = mask.to(per_pixel.dtype)
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1)


def _pixel_loss(logits: Tensor) -> Loss:
    """The cross-entropy for these logits: binary for one channel, softmax otherwise."""
    return bce_with_logits if logits.ndim == 4 and logits.shape[1] == 1 else cross_entropy


def _require_weight(weight: Tensor | None, name: str) -> None:
    if weight is None:
        raise ValueError(
            f"{name} needs the pixel weight map `weight` of shape (B, H, W), got None "
            "(see napari_unet.core.training.weightmap.unet_weight_map)"
        )


LOSSES: dict[str, Loss] = {
    "ce": cross_entropy,
    "dice": dice_loss,
    "ce_dice": ce_dice,
    "bce": bce_with_logits,
    "weighted_ce": weighted_cross_entropy,
    "weighted_ce_dice": weighted_ce_dice,
}

# The losses that take the U-Net border weights (the trainer computes them for these only).
WEIGHTED = ("weighted_ce", "weighted_ce_dice")


def get_loss(name: str) -> Loss:
    """The loss registered as ``name`` in :data:`LOSSES`."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}") from None


def loss_for_outputs(name: str, channels: int) -> Loss:
    """The loss ``name`` for a network with ``channels`` output channels.

    For one channel (a sigmoid foreground probability) cross-entropy is the
    binary one: ``"ce"`` and ``"weighted_ce"`` give :func:`bce_with_logits`
    (which takes the same pixel weights). ``"bce"`` needs one channel.
    """
    if channels == 1 and name in ("ce", "weighted_ce"):
        name = "bce"
    if name == "bce" and channels != 1:
        raise ValueError(f"the bce loss needs a one-channel output, this network has {channels} channels; use ce")
    return get_loss(name)


def deep_supervision(
    side_logits: Sequence[Tensor],
    fused_logits: Tensor,
    target: Tensor,
    *,
    base: str | Loss = "ce",
    weight: Tensor | None = None,
    ignore_index: int | None = IGNORE_INDEX,
) -> Tensor:
    """Sum of ``base`` over the side outputs and the fused output (U^2-Net's deep supervision).

    Side outputs smaller than the target are up-sampled to it (bilinear, on
    the logits) first; the fused output must already match. U^2-Net uses BCE
    (``base="bce"``, one-channel outputs).

    Parameters
    ----------
    side_logits : sequence of Tensor of shape (B, K, h_i, w_i)
    fused_logits : Tensor of shape (B, K, H, W)
    target : Tensor of shape (B, H, W), integer
    base : str or Loss
        A name in :data:`LOSSES` or a loss with the same signature.
    weight : Tensor of shape (B, H, W), float, optional
    ignore_index : int or None

    Returns
    -------
    Tensor of shape ()
    """
    loss: Callable[..., Tensor] = get_loss(base) if isinstance(base, str) else base
    total = loss(fused_logits, target, weight=weight, ignore_index=ignore_index)
    for i, side in enumerate(side_logits):
        if side.ndim != 4 or side.shape[:2] != fused_logits.shape[:2]:
            raise ValueError(
                f"side output {i} must have the batch size and channels of the fused output "
                f"{tuple(fused_logits.shape[:2])} as (B, K, h, w), got shape {tuple(side.shape)}"
            )
        if side.shape[-2:] != target.shape[-2:]:
            side = F.interpolate(side, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
        total = total + loss(side, target, weight=weight, ignore_index=ignore_index)
    return total


def _prepare(
    logits: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int | None, name: str, *, classes: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Checked inputs with unannotated pixels neutralised.

    Returns logits with zeros at unannotated pixels, target with 0 there
    (int64), and the pixel weights (B, H, W), 0 there.
    """
    if logits.ndim != 4 or not logits.is_floating_point():
        raise ValueError(
            f"{name}: expected float logits of shape (B, K, H, W), got {logits.dtype} {tuple(logits.shape)}"
        )
    b, k, h, w = logits.shape
    if target.shape != (b, h, w) or target.is_floating_point() or target.is_complex():
        raise ValueError(
            f"{name}: expected an integer target of shape {(b, h, w)} for logits {tuple(logits.shape)}, "
            f"got {target.dtype} {tuple(target.shape)}"
        )
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    n_classes = classes or max(k, 2)
    bad = valid & ((target < 0) | (target >= n_classes))
    if bad.any():
        found = torch.unique(target[bad])[:5].tolist()
        allowed = f"class ids in [0, {n_classes})"
        if ignore_index is not None:
            allowed += f" or the ignore index {ignore_index}"
        raise ValueError(f"{name}: target values must be {allowed}, found {found}")
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    if weight is None:
        pixel_weight = valid.to(logits.dtype)
    else:
        if weight.shape != (b, h, w) or not weight.is_floating_point():
            raise ValueError(
                f"{name}: expected float weights of shape {(b, h, w)}, got {weight.dtype} {tuple(weight.shape)}"
            )
        pixel_weight = torch.where(valid, weight.to(logits.dtype), zero)
    logits = torch.where(valid[:, None], logits, zero)
    return logits, torch.where(valid, target, 0), pixel_weight


def _weighted_mean(per_pixel: Tensor, weight: Tensor) -> Tensor:
    """``sum(w * l) / sum(w)``; exactly 0, still in the graph, when every weight is 0."""
    total = weight.sum()
    return (per_pixel * weight).sum() / torch.where(total > 0, total, torch.ones_like(total))
