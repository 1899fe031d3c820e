"""The package imports only downward: ops -> models, data -> scoring -> engine, deploy -> export -> apps
(bench, study) -> demo. Units of one layer do not import each other (deploy never imports the engine).

Every ``import``/``from ... import`` of every vidfast module (including the ones inside functions) is
checked against the layer order below; deployment is checked at run time not to load the training engine.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vidfast

PACKAGE = Path(vidfast.__file__).parent

# lower number = lower layer; a module may import its own top-level unit and any unit of a lower layer
LAYERS: dict[str, int] = {
    # neutral: import nothing of vidfast but each other
    "vidfast": 0, "vidfast._ext": 0, "vidfast.info": 0, "vidfast.errors": 0, "vidfast.conventions": 0,
    "vidfast.devices": 0, "vidfast.ranks": 0, "vidfast.progress": 0, "vidfast.video_index": 0,
    "vidfast.lazy": 0,
    "vidfast.ops": 1, "vidfast.runtime": 1, "vidfast.puzzle": 1,
    "vidfast.models": 2, "vidfast.data": 2,
    "vidfast.scoring": 3,
    "vidfast.engine": 4, "vidfast.deploy": 4,
    "vidfast.export": 5,
    "vidfast.bench": 6, "vidfast.study": 6,
    "vidfast.demo": 7,  # runs a study
}


def _unit(module: str) -> str:
    """The layer unit of a dotted module name: ``vidfast.engine.trainer`` -> ``vidfast.engine``."""
    parts = module.split(".")
    unit = ".".join(parts[:2])
    if unit in LAYERS:
        return unit
    if parts[1:2] == ["_C"]:
        return "vidfast._ext"  # the native extension, loaded by _ext
    return "vidfast"  # a name defined by the package root (``from vidfast import __version__``)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every vidfast import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _module_name(path).split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # ``from vidfast import conventions`` names a submodule: check that one
            names = [f"{name}.{a.name}" if name == "vidfast" else name for a in node.names]
            found += [(node.lineno, n) for n in names]
    return [(line, name) for line, name in found if name == "vidfast" or name.startswith("vidfast.")]


def test_every_module_has_a_layer():
    units = {".".join(_module_name(p).split(".")[:2]) for p in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


def test_imports_go_only_downward():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = _unit(_module_name(path))
        for line, name in _imports(path):
            theirs = _unit(name)
            if theirs == mine:
                continue
            if LAYERS[theirs] >= LAYERS[mine] and not (LAYERS[mine] == LAYERS[theirs] == 0):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} {mine} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_layer_check_can_fail(tmp_path, monkeypatch):
    """A deploy module importing the engine is reported."""
    bad = tmp_path / "vidfast" / "deploy" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from vidfast.engine.trainer import fit\nfrom vidfast.errors import VidfastError\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "vidfast")
    with pytest.raises(AssertionError, match="vidfast/deploy/bad.py:1 vidfast.deploy imports vidfast.engine"):
        test_imports_go_only_downward()


@pytest.mark.parametrize("module", ["vidfast.deploy", "vidfast.deploy.predict", "vidfast.scoring"])
def test_deployment_does_not_load_the_engine(module):
    code = (f"import sys, {module}; "
            "loaded = sorted(m for m in sys.modules if m.startswith('vidfast.engine')); "
            "assert not loaded, loaded")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
