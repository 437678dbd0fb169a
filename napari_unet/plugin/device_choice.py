"""The device combo box: auto, cpu, cuda, mps, those not on this machine shown but disabled; remembered."""

from __future__ import annotations

from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QComboBox

from ..core.devices import DEVICE_CHOICES, available

DEVICE_KEY = "predict/device"


class DeviceCombo(QComboBox):
    def __init__(self, settings: QSettings):
        super().__init__()
        names = available().split(", ")
        remembered = settings.value(DEVICE_KEY, "auto")
        for name in DEVICE_CHOICES:
            self.addItem(name, name)
            enabled = name == "auto" or name in names
            self.model().item(self.count() - 1).setEnabled(enabled)
            if enabled and name == remembered:
                self.setCurrentIndex(self.count() - 1)
        self.currentIndexChanged.connect(lambda: settings.setValue(DEVICE_KEY, self.currentData()))
