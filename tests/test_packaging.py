"""A wheel built from this tree installs, and napari finds the plugin, its widgets and samples from it alone.

The wheel is built into ``tmp_path`` and installed with ``--no-deps`` into a
fresh virtual environment. The heavy dependencies (torch, napari, npe2, ...)
are made importable there by a ``.pth`` line naming this interpreter's
site-packages: a plain path line adds that folder to ``sys.path`` without
running its own ``.pth`` files, so an editable install of this project there
cannot shadow the wheel.
"""

import os
import site
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import napari_unet

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FILES = {
    f"napari_unet/sample_data/{name}{suffix}.tif"
    for name in ("nuclei_fluorescence", "nuclei_fluorescence_dense", "nuclei_he")
    for suffix in ("", "_labels")
}

DISCOVER = textwrap.dedent(
    """
    import importlib.metadata, sys
    from pathlib import Path
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-unet")
    assert [r.command for r in manifest.contributions.readers] == ["napari-unet.get_reader"], manifest
    assert [w.command for w in manifest.contributions.writers] == ["napari-unet.write_labels"], manifest
    widgets = sorted(w.display_name for w in manifest.contributions.widgets)
    samples = sorted(s.key for s in manifest.contributions.sample_data)
    assert {"Predict", "Label tools"} <= set(widgets), widgets
    assert samples == ["nuclei_fluorescence", "nuclei_fluorescence_dense", "nuclei_he", "nuclei_stack"], samples

    from napari_unet.plugin.sample_data import nuclei_stack

    assert nuclei_stack()[0][0].shape == (5, 256, 256)

    # The shipped default model loads from the installed wheel and finds the sample's nuclei.
    import numpy as np
    import tifffile
    from importlib import resources
    from napari_unet import load_model, segment

    model = load_model("default")
    samples = resources.files("napari_unet") / "sample_data"
    image = tifffile.imread(samples / "nuclei_fluorescence.tif")
    truth = tifffile.imread(samples / "nuclei_fluorescence_labels.tif")
    found, expected = int(segment(image, model, device="cpu").max()), len(np.unique(truth)) - 1
    assert 0.75 * expected <= found <= 1.25 * expected, (found, expected)
    print("default model found", found, "of", expected, "nuclei")

    import napari_unet

    prefix = Path(sys.prefix).resolve()
    where = {
        "napari_unet": Path(napari_unet.__file__).resolve(),
        "distribution": Path(importlib.metadata.distribution("napari-unet").locate_file("")).resolve(),
    }
    for what, path in where.items():
        assert prefix in path.parents, f"{what} comes from {path}, not from the fresh environment {prefix}"
    print("discovered", manifest.package_version)
    """
)


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def clean_env() -> dict[str, str]:
    """The environment without anything that would put the source tree on ``sys.path``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def build_wheel(out: Path) -> Path:
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, ROOT)
    (wheel,) = out.glob("napari_unet-*.whl")
    return wheel


def fresh_venv(where: Path) -> Path:
    """A virtual environment in ``where`` that sees this interpreter's site-packages through a plain path."""
    run(sys.executable, "-m", "venv", "--without-pip", where)
    python = where / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    shared = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "shared_dependencies.pth").write_text("".join(f"{p}\n" for p in shared))
    return python


def test_the_wheel_ships_the_manifest_and_napari_discovers_the_plugin_from_it(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        manifest = zf.getinfo("napari_unet/napari.yaml")
        assert not stat.S_ISLNK(manifest.external_attr >> 16), "the manifest is shipped as a link"
        assert zf.read(manifest).decode() == (ROOT / "napari.yaml").read_text()
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "napari_unet").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel"
    assert SAMPLE_FILES - names == set(), "sample data missing from the wheel"
    assert "napari_unet/models/default_nuclei.safetensors" in names, "the default model is not in the wheel"
    assert "napari_unet/models/default_nuclei.replay.npz" in names, "the default model's replay set is not in the wheel"
    assert "napari_unet/models/default_nuclei.check_counts.json" in names, "the default's check counts are missing"

    python = fresh_venv(tmp_path / "venv")
    env = clean_env()
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, env=env)
    done = run(python, "-c", DISCOVER, cwd=tmp_path, env=env)
    assert f"discovered {napari_unet.__version__}" in done.stdout
    run(tmp_path / "venv" / "bin" / "napari-unet", "--help", cwd=tmp_path, env=env)
