"""``make run``: napari with the plugin's widgets and a sample image, segmented by the shipped model."""

from __future__ import annotations


def main() -> None:
    import napari

    from ..core.models.model import builtin_model_path

    viewer = napari.Viewer()
    viewer.open_sample("napari-unet", "nuclei_fluorescence_dense")
    _, predict = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    viewer.window.add_plugin_dock_widget("napari-unet", "Label tools")
    if builtin_model_path("default") is not None and predict.set_model("default"):
        predict.run()  # segment the sample with the shipped model, in the background
    napari.run()


if __name__ == "__main__":
    main()
