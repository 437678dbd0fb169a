"""The wheel carries what the plugin needs: the manifest, the widgets, the sample data."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FILES = [
    f"napari_unet/sample_data/{name}{suffix}.tif"
    for name in ("nuclei_fluorescence", "nuclei_fluorescence_dense", "nuclei_he")
    for suffix in ("", "_labels")
]

DISCOVER = """
import napari_unet
from npe2 import PluginManager
from napari_unet.plugin.sample_data import nuclei_stack
pm = PluginManager()
pm.discover(include_npe1=False)
manifest = pm.get_manifest("napari-unet")
print(napari_unet.__file__)
print(",".join(sorted(w.display_name for w in manifest.contributions.widgets)))
print(",".join(sorted(s.key for s in manifest.contributions.sample_data)))
print(nuclei_stack()[0][0].shape)
"""


def test_the_wheel_ships_the_manifest_and_the_sample_data_and_is_discovered(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("napari_unet-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "installed")
    assert {"napari_unet/napari.yaml", "napari_unet/plugin/predict_widget.py", *SAMPLE_FILES} <= names
    # The unpacked wheel first on the path stands in for a fresh install.
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "installed"))
    out = subprocess.run(
        [sys.executable, "-c", DISCOVER], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.split("\n")
    assert out[0].startswith(str(tmp_path / "installed"))
    assert out[1] == "Label tools,Predict"
    assert out[2] == "nuclei_fluorescence,nuclei_fluorescence_dense,nuclei_he,nuclei_stack"
    assert out[3] == "(5, 256, 256)"
