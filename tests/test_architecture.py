"""The layering: the library and the command line import no GUI (no napari, no Qt, no widget toolkit);
core is grouped in layers that import only those under them, and no module imports itself back."""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import napari_unet.core

GUI_PACKAGES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")
ROOT = Path(__file__).resolve().parents[1]


def gui_packages_loaded_by(modules: list[str]) -> list[str]:
    """The GUI packages in ``sys.modules`` of a fresh interpreter that imported ``modules``."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({GUI_PACKAGES!r}))))\n"
        "print(sys.modules['napari_unet'].__file__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    loaded, package_file = done.stdout.splitlines()[-2:]
    assert Path(package_file).resolve().parent == ROOT / "napari_unet", f"imported {package_file}, not this tree"
    return json.loads(loaded)


def core_modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages(napari_unet.core.__path__, "napari_unet.core.")]


def test_core_and_cli_import_no_gui_package():
    modules = ["napari_unet", *core_modules(), "napari_unet.cli"]
    assert {"napari_unet.core.predict.tiling", "napari_unet.core.predict.predictor", "napari_unet.core.models.model"} <= set(modules)
    assert gui_packages_loaded_by(modules) == []


def test_the_check_sees_a_gui_import():
    assert "napari" in gui_packages_loaded_by(["napari_unet", "napari"])


# --- the import contract: read from the source, imports inside functions included ----------------------

# each over those before it
LAYERS = ["io", "models", "labels", "predict", "exchange", "evaluation", "batch", "training"]
SHARED = {"napari_unet.core", "napari_unet.core.errors", "napari_unet.core.progress", "napari_unet.core.devices"}


def import_graph() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports, anywhere in its source."""
    modules = {}
    for path in (ROOT / "napari_unet").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def layer(module: str) -> int | None:
    """The module's place in the core's order (-1: shared by all), None outside core."""
    if module in SHARED:
        return -1
    parts = module.split(".")
    if parts[:2] != ["napari_unet", "core"]:
        return None
    return LAYERS.index(parts[2])


def contract_breaches(graph: dict[str, set[str]]) -> list[str]:
    """Imports against the layering: core over cli or plugin, cli over plugin, a core layer over a later one."""
    breaches = []
    for module, imported in graph.items():
        for target in imported:
            if module.startswith("napari_unet.core") and target.startswith(("napari_unet.cli", "napari_unet.plugin")):
                breaches.append(f"{module} -> {target}: core is under cli and plugin")
            elif module.startswith("napari_unet.cli") and target.startswith("napari_unet.plugin"):
                breaches.append(f"{module} -> {target}: the command line is not over the plugin")
            elif layer(module) is not None and layer(target) is not None and layer(target) > layer(module):
                breaches.append(f"{module} -> {target}: {LAYERS[layer(target)]} is over {LAYERS[layer(module)]}")
    return sorted(breaches)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_of_core_is_in_a_layer():
    graph = import_graph()
    core = [m for m in graph if m.startswith("napari_unet.core")]
    assert len(core) > 40 and all(layer(m) is not None for m in core)


def test_the_package_keeps_its_import_contract_and_has_no_import_cycle():
    graph = import_graph()
    assert "napari_unet.core.batch.jobs" in graph["napari_unet.core.batch.cluster"]  # imports inside functions count
    assert contract_breaches(graph) == []
    assert cycles(graph) == []


def test_the_contract_check_sees_a_breach_and_a_cycle():
    graph = import_graph()
    graph["napari_unet.core.predict.sizing"].add("napari_unet.plugin.layers")
    graph["napari_unet.core.io.axes"].add("napari_unet.core.predict.inference")  # io over predict, and a cycle
    assert contract_breaches(graph) == [
        "napari_unet.core.io.axes -> napari_unet.core.predict.inference: predict is over io",
        "napari_unet.core.predict.sizing -> napari_unet.plugin.layers: core is under cli and plugin",
    ]
    assert any({"napari_unet.core.io.axes", "napari_unet.core.predict.inference"} <= set(c) for c in cycles(graph))
