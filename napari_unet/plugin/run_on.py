"""Where Correct & Train trains: this computer, or a worker of a dask scheduler (a GPU server, say).

The address is the ``scheduler`` preference (:mod:`.preferences`) and the
choice is remembered too, so both are there again in the next session. See :mod:`napari_unet.core.training.remote`.
"""

from __future__ import annotations

from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QComboBox, QLineEdit

from ..core.batch.cluster import parse_scheduler
from ..core.errors import NapariUNetError
from .form import row
from .preferences import Preferences

HERE, DASK = "here", "dask"
CHOICE_KEY = "train/run_on"  # the choice made last, in the widgets' QSettings


class RunOn:
    """The *run on* choice and the scheduler address; :attr:`widget` goes into the form."""

    def __init__(self, preferences: Preferences, settings: QSettings):
        self.combo = QComboBox()
        self.combo.addItem("this computer", HERE)
        self.combo.addItem("dask scheduler", DASK)
        self.address = QLineEdit(preferences.get("scheduler"))
        self.address.setPlaceholderText("tcp://gpu-server:8786")
        self.address.setToolTip(
            "The address of a dask scheduler whose worker trains (on its GPU when it has one); "
            "local or local:N start workers on this computer"
        )
        self.combo.setCurrentIndex(max(0, self.combo.findData(settings.value(CHOICE_KEY, HERE))))
        self.address.setEnabled(self.combo.currentData() == DASK)
        self.combo.currentIndexChanged.connect(self._chosen)
        self.combo.currentIndexChanged.connect(lambda: settings.setValue(CHOICE_KEY, self.combo.currentData()))
        self.address.editingFinished.connect(lambda: preferences.set("scheduler", self.address.text().strip()))
        self.widget = row(self.combo, self.address)

    def _chosen(self) -> None:
        self.address.setEnabled(self.combo.currentData() == DASK)

    def scheduler(self) -> str | None:
        """The scheduler to train on, None for this computer; raises NapariUNetError for an address that is not one."""
        if self.combo.currentData() == HERE:
            return None
        text = self.address.text().strip()
        try:
            parse_scheduler(text)
        except ValueError as error:
            raise NapariUNetError(f"run on: {error}") from None
        return text
