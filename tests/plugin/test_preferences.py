"""The plugin's preferences live in napari's Preferences (plugin settings declared in the manifest)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from napari_unet.plugin.predict_widget import PredictWidget
from napari_unet.plugin.train_widget import TrainWidget


def test_napari_lists_the_preferences_with_their_defaults(preferences):
    assert (preferences.model, preferences.device, preferences.projects_folder) == ("", "auto", "")


def test_the_device_preference_is_what_predict_starts_with_and_what_it_sets(viewer, preferences):
    preferences.device = "cpu"
    widget = PredictWidget(viewer)
    assert widget.device_combo.currentData() == "cpu"
    widget.device_combo.setCurrentIndex(widget.device_combo.findData("auto"))
    assert preferences.device == "auto"
    assert PredictWidget(viewer).device_combo.currentData() == "auto"


def test_a_model_file_set_in_the_preferences_is_offered_and_chosen(viewer, preferences, model_file):
    preferences.model = str(model_file)
    widget = PredictWidget(viewer)
    assert widget.model_combo.currentData() == str(model_file.resolve())
    assert widget.model_combo.load().config == widget.model_combo.files.load(str(model_file)).config
    widget.model_combo.setCurrentIndex(widget.model_combo.findData("default"))
    widget.model_combo.activated.emit(widget.model_combo.currentIndex())
    assert preferences.model == "default"
    assert TrainWidget(viewer).model_combo.currentData() == "default"


def test_the_projects_folder_preference_is_where_a_new_project_goes(viewer, preferences, tmp_path):
    preferences.projects_folder = str(tmp_path / "projects")
    widget = TrainWidget(viewer)
    pair = SimpleNamespace(image=SimpleNamespace(name="cells 1"))
    assert widget.project_folder([pair]) == tmp_path / "projects" / "cells_1"
    assert widget.project_edit.placeholderText() == str(Path(tmp_path / "projects" / "<image name>"))
    widget.project_edit.setText(str(tmp_path / "mine"))
    assert widget.project_folder([pair]) == tmp_path / "mine"
