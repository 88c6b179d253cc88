"""labkit's public face is written twice in labkit/__init__.py: PUBLIC (name → module), which
`__getattr__` imports from lazily and `__all__` is made of, and the `if TYPE_CHECKING:` imports
that editors and type checkers read. The two must name the same things from the same modules."""
from __future__ import annotations

import ast
from pathlib import Path

import labkit

INIT = Path(labkit.__file__)


def type_checking_imports() -> dict[str, str]:
    """name → module ('.gpt' → 'gpt') of every import inside the file's `if TYPE_CHECKING:` block."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    blocks = [node for node in tree.body
              if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"]
    assert len(blocks) == 1, "labkit/__init__.py should have one `if TYPE_CHECKING:` block at module level"
    found: dict[str, str] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1 and node.module, \
            f"line {node.lineno}: the TYPE_CHECKING block should hold only `from .module import name as name`"
        for alias in node.names:
            assert alias.asname == alias.name, \
                f"line {node.lineno}: write `{alias.name} as {alias.name}`, so that the name is re-exported (PEP 484)"
            assert alias.name not in found, f"{alias.name} is imported twice"
            found[alias.name] = node.module
    return found


def test_type_checking_block_names_exactly_the_public_names():
    names = set(type_checking_imports())
    public = set(labkit.__all__)
    assert not public - names, f"in __all__ but not in the TYPE_CHECKING block: {sorted(public - names)}"
    assert not names - public, f"in the TYPE_CHECKING block but not in __all__ (PUBLIC): {sorted(names - public)}"


def test_type_checking_block_imports_each_name_from_its_public_module():
    wrong = {name: (module, labkit.PUBLIC[name]) for name, module in type_checking_imports().items()
             if labkit.PUBLIC.get(name) != module}
    assert not wrong, "name: (TYPE_CHECKING module, PUBLIC module) differ: " + repr(wrong)


def test_all_is_public_sorted():
    assert labkit.__all__ == sorted(labkit.PUBLIC)


def test_every_public_name_says_which_chapter_derives_or_uses_it():
    """d2l's habit ("defined in section …"): each public docstring names the chapter a learner meets
    the thing in, so that help(labkit.fit) leads back to the notebook that builds it by hand."""
    import inspect
    import re

    silent = [name for name in labkit.__all__
              if not re.search(r"\bchapters? \d\d[a-z]?\b", inspect.getdoc(getattr(labkit, name)) or "", re.IGNORECASE)]
    assert not silent, f"these public docstrings name no chapter ('Chapter 06a builds it …'): {silent}"
