"""GLOSSARY.md holds: one table of terms, each row complete, bilingual, sorted, linked to a chapter
that exists and that really uses the term.

A row is `| English | 中文 | Chapter | One line |`. The English term may carry a short form or a
second name in parentheses, as in "KV cache (key-value cache)": the row passes the chapter check when
either form occurs in the linked notebook's text (markdown and code cells) as a whole word or phrase
(a plural "s" or "es" allowed), so that "Nat" is not found inside "natural" but "Key" is found in
"keys". Both sides are compared case-insensitively, with markdown emphasis and backticks dropped, and
with "-", "_" and runs of whitespace read as one space, so that "Scaled dot-product attention" finds
`F.scaled_dot_product_attention` and a term broken across two lines is still found.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GLOSSARY = REPO / "GLOSSARY.md"
HEADER = ["English", "中文", "Chapter", "One line"]
LINK = re.compile(r"\[(?P<label>[^\]]+)\]\((?P<target>[^)\s]+)\)")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def table_rows() -> list[tuple[int, list[str]]]:
    """(line number, cells) for every row of the glossary table, header and separator left out."""
    rows, in_table = [], False
    for number, line in enumerate(GLOSSARY.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells == HEADER:
            in_table = True
        elif in_table and not all(set(cell) <= set("-: ") for cell in cells):
            rows.append((number, cells))
    return rows


ROWS = table_rows()


def where(number: int, cells: list[str]) -> str:
    return f"GLOSSARY.md line {number} ({cells[0]!r})"


def normalise(text: str) -> str:
    text = re.sub(r"[*`]", "", text.casefold())
    return " ".join(re.sub(r"[-_]", " ", text).split())


def forms(term: str) -> list[str]:
    """'KV cache (key-value cache)' -> ['KV cache', 'key-value cache']; 'Epoch' -> ['Epoch']."""
    match = re.fullmatch(r"(.+?)\s*\(([^()]+)\)", term)
    if not match:
        return [term]
    return [match.group(1)] + [alias.strip() for alias in match.group(2).split(",")]


def occurs(form: str, text: str) -> bool:
    """Whether a term's form occurs in normalised text as a whole word or phrase (or its plural)."""
    pattern = rf"(?<![a-z0-9]){re.escape(normalise(form))}(?:s|es)?(?![a-z0-9])"
    return re.search(pattern, text) is not None


@functools.cache
def chapter_text(path: Path) -> str:
    """A notebook's markdown and code, normalised for searching."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return normalise("\n".join("".join(cell["source"]) for cell in cells
                               if cell["cell_type"] in ("markdown", "code")))


def test_the_table_was_found():
    assert GLOSSARY.exists(), "GLOSSARY.md is missing"
    text = GLOSSARY.read_text(encoding="utf-8")
    assert text.startswith("# Glossary · 术语表\n"), "GLOSSARY.md must start with '# Glossary · 术语表'"
    assert "| " + " | ".join(HEADER) + " |" in text, f"no table header {HEADER} in GLOSSARY.md"
    assert len(ROWS) >= 100, f"only {len(ROWS)} rows in the glossary table"


def test_every_row_has_four_filled_columns():
    wrong = []
    for number, cells in ROWS:
        if len(cells) != 4:
            wrong.append(f"{where(number, cells)}: {len(cells)} columns instead of 4 "
                         "(a '|' inside a cell splits it)")
        else:
            wrong += [f"{where(number, cells)}: the {name} column is empty"
                      for name, cell in zip(HEADER, cells) if not cell]
    assert not wrong, "\n".join(wrong)


def test_the_chinese_column_is_chinese():
    wrong = [f"{where(number, cells)}: no Chinese character in the 中文 column: {cells[1]!r}"
             for number, cells in ROWS if len(cells) == 4 and not CJK.search(cells[1])]
    assert not wrong, "\n".join(wrong)


def linked_chapter(cells: list[str]) -> tuple[Path | None, str]:
    """The notebook a row's Chapter cell links to, or None and why not."""
    match = LINK.fullmatch(cells[2])
    if not match:
        return None, f"the Chapter cell {cells[2]!r} is not one markdown link like [06a](chapters/06a_….ipynb)"
    target = Path(match.group("target"))
    if target.parent != Path("chapters") or target.suffix != ".ipynb":
        return None, f"the link {str(target)!r} does not point at a notebook in chapters/"
    path = REPO / target
    if not path.is_file():
        return None, f"the link {str(target)!r} points at a file that does not exist"
    if target.name.split("_")[0] != match.group("label"):
        return None, f"the link text {match.group('label')!r} does not name the notebook {target.name!r}"
    return path, ""


def test_every_chapter_link_resolves():
    wrong = []
    for number, cells in ROWS:
        if len(cells) == 4:
            path, why = linked_chapter(cells)
            if path is None:
                wrong.append(f"{where(number, cells)}: {why}")
    assert not wrong, "\n".join(wrong)


def test_terms_are_unique_and_sorted():
    terms = [(number, cells[0]) for number, cells in ROWS if cells]
    seen, wrong = {}, []
    for number, term in terms:
        key = term.casefold()
        if key in seen:
            wrong.append(f"GLOSSARY.md line {number} ({term!r}): the same term as line {seen[key]}")
        seen.setdefault(key, number)
    for (_, before), (number, term) in zip(terms, terms[1:]):
        if term.casefold() < before.casefold():
            wrong.append(f"GLOSSARY.md line {number} ({term!r}): out of order, it sorts before "
                         f"{before!r} on the line above (case-insensitive)")
    assert not wrong, "\n".join(wrong)


def test_every_term_occurs_in_its_chapter():
    wrong = []
    for number, cells in ROWS:
        if len(cells) != 4:
            continue
        path, _ = linked_chapter(cells)
        if path is None:
            continue  # reported by test_every_chapter_link_resolves
        text = chapter_text(path)
        if not any(occurs(form, text) for form in forms(cells[0])):
            wrong.append(f"{where(number, cells)}: {' / '.join(map(repr, forms(cells[0])))} does not occur "
                         f"in {path.relative_to(REPO)} (link the chapter that explains it, or name the "
                         "term as that chapter does)")
    assert not wrong, "\n".join(wrong)
