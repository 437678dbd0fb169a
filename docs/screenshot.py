"""Make the README's screenshot: napari with the Predict widget and a segmented sample.

Runs the plugin as a user would: opens a sample, docks Predict (and Label
tools under it), chooses the model, presses Run, waits for the labels and saves
the whole window. Without a
display, run it under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1200x24" python docs/screenshot.py --model default -o docs/images/predict.png

The widget's remembered settings are not touched (it gets a temporary settings file).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SAMPLES = ("nuclei_fluorescence", "nuclei_fluorescence_dense", "nuclei_he", "nuclei_stack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="model file, or 'default' (the shipped model)")
    parser.add_argument("-o", "--output", default="docs/images/predict.png", help="PNG to write")
    parser.add_argument("--sample", default="nuclei_fluorescence_dense", choices=SAMPLES, help="sample to segment")
    parser.add_argument("--size", default="1400x860", help="window size, WIDTHxHEIGHT (default 1400x860)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the prediction")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.lower().split("x"))

    # Only errors as toasts over the picture (an environment override: the user's settings stay as they are).
    os.environ["NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL"] = "error"
    import napari
    from qtpy.QtCore import QSettings
    from qtpy.QtWidgets import QApplication

    from napari_unet.plugin.label_tools_widget import LabelToolsWidget
    from napari_unet.plugin.predict_widget import PredictWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(width, height)
    viewer.open_sample("napari-unet", args.sample)
    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.IniFormat)
        widget = PredictWidget(viewer, settings=settings)
        viewer.window.add_dock_widget(widget, name="Predict (napari-unet)", area="right")
        viewer.window.add_dock_widget(LabelToolsWidget(viewer), name="Label tools (napari-unet)", area="right")
        if not widget.set_model(args.model):
            print(f"screenshot: cannot use model {args.model!r}", file=sys.stderr)
            return 2
        app = QApplication.instance()
        if widget.run() is None:
            print(f"screenshot: Predict did not start: {widget.status.text()}", file=sys.stderr)
            return 2
        deadline = time.monotonic() + args.timeout
        while widget.worker is not None and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        if widget.worker is not None:
            widget.stop()
            print(f"screenshot: no result within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        viewer.reset_view()
        for _ in range(20):  # let napari draw the result
            app.processEvents()
            time.sleep(0.02)
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(output), canvas_only=False)
        print(f"{output}: {widget.status.text()}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
