"""The device combo box: auto, cpu, cuda, mps, those not on this machine shown but disabled; the choice is
the ``device`` preference (:mod:`.preferences`)."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox

from ..core.devices import DEVICE_CHOICES, available
from .preferences import Preferences


class DeviceCombo(QComboBox):
    def __init__(self, preferences: Preferences):
        super().__init__()
        names = available().split(", ")
        remembered = preferences.get("device")
        for name in DEVICE_CHOICES:
            self.addItem(name, name)
            enabled = name == "auto" or name in names
            self.model().item(self.count() - 1).setEnabled(enabled)
            if enabled and name == remembered:
                self.setCurrentIndex(self.count() - 1)
        self.currentIndexChanged.connect(lambda: preferences.set("device", self.currentData()))
