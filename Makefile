# Set-up and everyday commands. `make test` and `make run` build the environment in .venv
# (reused while pyproject.toml and the constraints are unchanged) and then do their job.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := .ci/constraints.txt
BIOIMAGEIO_SPEC := bioimageio.spec==0.5.14.3
XVFB := xvfb-run -a -s "-screen 0 1600x1200x24"
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test env system-deps bench default-model clean

env: $(STAMP)

# torch is pinned through the constraints file for every install: an unpinned torch (or a
# package asking for a newer one) pulls GBs of CUDA wheels, and a stray `triton` from such an
# upgrade crashes the CPU build at import; its presence means the environment must be rebuilt.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@if [ -x $(PY) ] && $(PY) -m pip show triton >/dev/null 2>&1; then \
		echo "triton found in $(VENV): rebuilding the environment"; rm -rf $(VENV); fi
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[testing]"
	# bioimageio.core 0.11 pins bioimageio.spec 0.5.12, which fails with the pydantic napari brings;
	# 0.5.14 works with both (its own tests and ours pass), so it goes in over the pin.
	$(PY) -m pip install -q --no-deps "$(BIOIMAGEIO_SPEC)"
	touch $(STAMP)

# Xvfb and Mesa for napari's OpenGL canvas on machines without a display.
system-deps:
	@if ! command -v xvfb-run >/dev/null 2>&1 || ! ldconfig -p | grep -q libGL.so.1; then \
		echo "installing Xvfb and Mesa (apt)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
			libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
			libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 >/dev/null; \
	fi

# The whole suite under PyQt5, then the widget tests again under PyQt6 (napari's default binding);
# the tests that measure wall-clock time (marker `perf`) on their own at the end, on a machine no
# longer busy with the others.
test: env system-deps
	QT_API=pyqt5 PYTEST_QT_API=pyqt5 $(XVFB) $(PY) -m pytest -m "not perf"
	QT_API=pyqt6 PYTEST_QT_API=pyqt6 $(XVFB) $(PY) -m pytest -q -m "not perf" tests/plugin
	QT_API=pyqt5 PYTEST_QT_API=pyqt5 $(XVFB) $(PY) -m pytest -q -m perf

# With a display: napari opens with the widgets and a sample that the default model segments.
# Without one: the same runs under Xvfb and what napari shows is saved to run.png.
run: env system-deps
	@if [ -n "$$DISPLAY" ] || [ -n "$$WAYLAND_DISPLAY" ]; then $(PY) -m napari_unet.plugin.demo; else \
		echo "No display here: running napari under Xvfb and saving the window to run.png"; \
		echo "(on a machine with a display, make run opens the viewer itself)"; \
		$(XVFB) $(PY) docs/screenshot.py --model default -o run.png; fi

bench: env
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[testing,bench]"
	$(PY) benchmarks/tiled_prediction.py

# Rebuild the shipped default model from ../shared/data/dsb2018 (about 130 minutes on 2 CPU cores; docs/model_card.md),
# then its counts on the replay check crops, which a fine-tune reads rather than predicts.
default-model: env
	$(PY) scripts/train_default_model.py --steps 15000 --ema 0.999
	$(PY) scripts/replay_check_counts.py

clean:
	rm -rf $(VENV) build dist *.egg-info
