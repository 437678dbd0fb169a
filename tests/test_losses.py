import math

import pytest
import torch

from napari_unet.core.models.config import IGNORE_INDEX
from napari_unet.core.training.losses import (
    LOSSES,
    WEIGHTED,
    bce_with_logits,
    ce_dice,
    cross_entropy,
    deep_supervision,
    dice_loss,
    distillation,
    get_loss,
    weighted_ce_dice,
    weighted_cross_entropy,
)

I = IGNORE_INDEX
LN2 = math.log(2)

# Two pixels, two classes: pixel 0 scores (0, 0), pixel 1 scores (ln 3, 0).
# Softmax: pixel 0 (1/2, 1/2), pixel 1 (3/4, 1/4). Target: class 0, class 1.
LOGITS = torch.tensor([[[[0.0, math.log(3)]], [[0.0, 0.0]]]])
TARGET = torch.tensor([[[0, 1]]])
# One channel: sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4.
LOGITS1 = torch.tensor([[[[0.0, math.log(3)]]]])


def _logits(values=LOGITS) -> torch.Tensor:
    return values.clone().requires_grad_(True)


def test_cross_entropy_by_hand():
    # -ln(1/2) and -ln(1/4)
    assert cross_entropy(LOGITS, TARGET).item() == pytest.approx((LN2 + 2 * LN2) / 2)
    # weights 1 and 3: (ln 2 + 3 ln 4) / 4
    weight = torch.tensor([[[1.0, 3.0]]])
    assert cross_entropy(LOGITS, TARGET, weight=weight).item() == pytest.approx(7 / 4 * LN2)
    assert weighted_cross_entropy(LOGITS, TARGET, weight=weight).item() == pytest.approx(7 / 4 * LN2)


def test_dice_loss_by_hand():
    # class 0: 2 * 1/2 / (5/4 + 1) = 4/9; class 1: 2 * 1/4 / (3/4 + 1) = 2/7
    expected = 1 - (4 / 9 + 2 / 7) / 2
    assert dice_loss(LOGITS, TARGET).item() == pytest.approx(expected)
    assert ce_dice(LOGITS, TARGET).item() == pytest.approx(1.5 * LN2 + expected)


def test_dice_loss_leaves_out_classes_absent_from_the_annotated_target():
    # only pixel 1 (class 1) is annotated: 1 - 2 * 1/4 / (1/4 + 1); class 0, though predicted, is absent
    assert dice_loss(LOGITS, torch.tensor([[[I, 1]]])).item() == pytest.approx(1 - 0.4)


def test_one_channel_losses_use_the_sigmoid():
    assert bce_with_logits(LOGITS1, TARGET).item() == pytest.approx((LN2 + math.log(4 / 3)) / 2)
    # background (1/2, 1/4): 2 * 1/2 / (3/4 + 1) = 4/7; foreground (1/2, 3/4): 2 * 3/4 / (5/4 + 1) = 2/3
    dice = 1 - (4 / 7 + 2 / 3) / 2
    assert dice_loss(LOGITS1, TARGET).item() == pytest.approx(dice)
    assert ce_dice(LOGITS1, TARGET).item() == pytest.approx((LN2 + math.log(4 / 3)) / 2 + dice)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_ignored_pixels_change_neither_the_loss_nor_get_a_gradient(name):
    gen = torch.Generator().manual_seed(0)
    k = 1 if name == "bce" else 3
    target = torch.randint(0, max(k, 2), (2, 5, 6), generator=gen)
    ignored = torch.rand(2, 5, 6, generator=gen) < 0.4
    target[ignored] = I
    weight = torch.rand(2, 5, 6, generator=gen) + 0.5
    clean = torch.randn(2, k, 5, 6, generator=gen)
    garbage = torch.where(ignored[:, None], 1e4 * torch.randn(2, k, 5, 6, generator=gen), clean)
    garbage[0, 0][ignored[0]] = float("inf")
    garbage_weight = torch.where(ignored, torch.full_like(weight, float("nan")), weight)
    a, b = _logits(clean), _logits(garbage)
    loss_a = get_loss(name)(a, target, weight=weight)
    loss_b = get_loss(name)(b, target, weight=garbage_weight)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-6)
    loss_b.backward()
    assert torch.isfinite(b.grad).all()
    assert (b.grad[ignored[:, None].expand_as(b)] == 0).all()
    assert (b.grad[~ignored[:, None].expand_as(b)] != 0).any()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_ignored_gives_a_zero_that_backpropagates(name):
    k = 1 if name == "bce" else 3
    logits = _logits(torch.randn(2, k, 4, 4))
    target = torch.full((2, 4, 4), I)
    loss = get_loss(name)(logits, target, weight=torch.ones(2, 4, 4))
    assert loss.item() == 0 and loss.grad_fn is not None
    loss.backward()
    assert (logits.grad == 0).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_uniform_weight_changes_nothing(name):
    gen = torch.Generator().manual_seed(1)
    k = 1 if name == "bce" else 3
    logits = torch.randn(2, k, 5, 6, generator=gen)
    target = torch.randint(0, max(k, 2), (2, 5, 6), generator=gen)
    target[:, 0] = I
    ones, twos = torch.ones(2, 5, 6), torch.full((2, 5, 6), 2.0)
    loss = get_loss(name)
    assert loss(logits, target, weight=twos).item() == pytest.approx(loss(logits, target, weight=ones).item(), rel=1e-6)
    if name not in WEIGHTED:
        assert loss(logits, target).item() == pytest.approx(loss(logits, target, weight=ones).item(), rel=1e-6)


def test_weighted_ce_dice_weighs_the_cross_entropy_only():
    weight = torch.tensor([[[1.0, 3.0]]])
    ce = cross_entropy(LOGITS, TARGET, weight=weight).item()  # (ln 2 + 3 ln 4) / 4
    assert ce == pytest.approx((LN2 + 3 * 2 * LN2) / 4)
    expected = ce + dice_loss(LOGITS, TARGET).item()
    assert weighted_ce_dice(LOGITS, TARGET, weight=weight).item() == pytest.approx(expected)
    assert expected != pytest.approx(ce_dice(LOGITS, TARGET, weight=weight).item())  # which weighs the Dice too
    one_channel = bce_with_logits(LOGITS1, TARGET, weight=weight).item() + dice_loss(LOGITS1, TARGET).item()
    assert weighted_ce_dice(LOGITS1, TARGET, weight=weight).item() == pytest.approx(one_channel)
    with pytest.raises(ValueError, match=r"weighted_ce_dice needs the pixel weight map `weight`.*got None"):
        weighted_ce_dice(LOGITS, TARGET)


def test_deep_supervision_sums_the_side_and_fused_losses_after_upsampling():
    side = torch.zeros(1, 2, 1, 1)  # up-sampled to (1, 2, 1, 2): uniform, ln 2 per pixel
    assert deep_supervision([side], LOGITS, TARGET).item() == pytest.approx(LN2 + 1.5 * LN2)
    assert deep_supervision([side, LOGITS], LOGITS, TARGET).item() == pytest.approx(LN2 + 3 * LN2)
    bce = bce_with_logits(LOGITS1, TARGET).item()
    assert deep_supervision([], LOGITS1, TARGET, base="bce").item() == pytest.approx(bce)
    assert deep_supervision([LOGITS], LOGITS, TARGET, base=dice_loss).item() == pytest.approx(
        2 * dice_loss(LOGITS, TARGET).item()
    )
    with pytest.raises(ValueError, match=r"side output 0 .* \(1, 2\).*got shape \(1, 3, 1, 1\)"):
        deep_supervision([torch.zeros(1, 3, 1, 1)], LOGITS, TARGET)


def test_unknown_names_and_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="unknown loss 'focal'; valid names: ce, dice, ce_dice, bce, weighted_ce"):
        get_loss("focal")
    with pytest.raises(ValueError, match=r"needs the pixel weight map `weight` of shape \(B, H, W\), got None"):
        weighted_cross_entropy(LOGITS, TARGET)
    with pytest.raises(ValueError, match=r"integer target of shape \(1, 1, 2\).*got torch.float32 \(1, 1, 2\)"):
        cross_entropy(LOGITS, TARGET.float())
    with pytest.raises(ValueError, match=r"float logits of shape \(B, K, H, W\), got torch.float32 \(2, 1, 2\)"):
        cross_entropy(LOGITS[0], TARGET)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\) or the ignore index 255, found \[2, 7\]"):
        cross_entropy(LOGITS, torch.tensor([[[7, 2]]]))
    with pytest.raises(ValueError, match="cross_entropy needs K >= 2.*use bce_with_logits"):
        cross_entropy(LOGITS1, TARGET)
    with pytest.raises(ValueError, match=r"needs one-channel logits \(B, 1, H, W\), got \(1, 2, 1, 2\)"):
        bce_with_logits(LOGITS, TARGET)
    with pytest.raises(ValueError, match=r"float weights of shape \(1, 1, 2\), got torch.float32 \(1, 2\)"):
        cross_entropy(LOGITS, TARGET, weight=torch.ones(1, 2))


def test_cross_entropy_of_a_one_channel_output_is_the_binary_one():
    from napari_unet.core.training.losses import bce_with_logits, loss_for_outputs

    assert loss_for_outputs("ce", 1) is bce_with_logits and loss_for_outputs("weighted_ce", 1) is bce_with_logits
    assert loss_for_outputs("ce", 2) is not bce_with_logits
    with pytest.raises(ValueError, match="one-channel output, this network has 3 channels"):
        loss_for_outputs("bce", 3)


def test_distillation_by_hand_is_the_kl_divergence_over_the_masked_pixels():
    # Pixel 0: (1/2, 1/2) against the teacher's (3/4, 1/4); pixel 1 is the same for both.
    teacher = torch.tensor([[[[math.log(3), math.log(3)]], [[0.0, 0.0]]]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    both = torch.ones(1, 1, 2, dtype=torch.bool)
    assert distillation(LOGITS, teacher, both).item() == pytest.approx(kl / 2)
    first = torch.tensor([[[True, False]]])
    assert distillation(LOGITS, teacher, first).item() == pytest.approx(kl)
    assert distillation(teacher, teacher, both).item() == pytest.approx(0.0, abs=1e-7)
    # one channel: sigmoid(0) = 1/2 against sigmoid(ln 3) = 3/4, the same two classes
    assert distillation(LOGITS1[..., :1], LOGITS1[..., 1:], first[..., :1]).item() == pytest.approx(kl)


def test_distillation_sends_gradients_to_the_network_only_and_none_from_pixels_left_out():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4, requires_grad=True)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2] = True
    distillation(logits, teacher, mask).backward()
    assert teacher.grad is None
    assert (logits.grad[0, :, :2] != 0).any() and (logits.grad[0, :, 2:] == 0).all() and (logits.grad[1] == 0).all()
    empty = distillation(logits, teacher, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="one shape"):
        distillation(logits, teacher[:, :2], mask)
