"""Shared fixtures. Real data lives in ../shared/data (see its README)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet import Model, ModelConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def small_model(seed: int = 0, **network) -> Model:
    """A small, randomly initialised model (fast on the CPU), deterministic by ``seed``."""
    torch.manual_seed(seed)
    params = dict(depth=2, width=4) | network
    model = Model.from_config(ModelConfig(network=params, tile=64, overlap=16))
    _randomise_batch_norm(model.network, seed)
    return model


def _randomise_batch_norm(network: torch.nn.Module, seed: int) -> None:
    """Give batch-norm non-trivial running statistics, so folding it is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in network.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture
def model() -> Model:
    return small_model()


@pytest.fixture
def model_file(tmp_path, model) -> Path:
    return model.save(tmp_path / "model.safetensors")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def dsb_path(kind: str, image_id: str) -> Path:
    return DATA / "dsb2018" / kind / f"{image_id}.tif"


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
