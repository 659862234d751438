"""The simulator depends on the protocol only, so that it cannot share a bug with the daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import cmamd.sim

ALLOWED = ("cmamd.protocol", "cmamd.sim")


def cmamd_imports(source: str, module: str) -> set[str]:
    """Every cmamd module ``source`` imports, at any depth (inside functions too)."""
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # "from cmamd import daemon" imports cmamd.daemon (or a name of it): keep the tail
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "cmamd" or name.startswith("cmamd.")}


def forbidden(name: str) -> bool:
    return not any(name == allowed or name.startswith(allowed + ".") for allowed in ALLOWED)


def test_sim_imports_only_the_protocol_and_itself() -> None:
    root = Path(cmamd.sim.__file__).parent
    modules = sorted(root.rglob("*.py"))
    assert len(modules) > 10
    offending = {
        f"{path.relative_to(root)}: {name}"
        for path in modules
        for name in cmamd_imports(path.read_text(), f"cmamd.sim.{path.stem}")
        if forbidden(name)
    }
    assert not offending, sorted(offending)


def test_the_check_sees_every_form_of_import() -> None:
    source = (
        "import cmamd.accounts.model\n"
        "from cmamd.replication import sizing\n"
        "from cmamd import sim\n"
        "def f():\n    from cmamd import daemon\n"
        "from ..accounts import convert\n"
        "from . import records\n"
        "import cmamd\n"
    )
    names = cmamd_imports(source, "cmamd.sim.views")
    assert sorted(n for n in names if forbidden(n)) == [
        "cmamd",
        "cmamd.accounts.convert",
        "cmamd.accounts.model",
        "cmamd.daemon",
        "cmamd.replication.sizing",
    ]
    assert "cmamd.sim.records" in names
