"""Links and back-references resolve: a learner who follows one lands where it says.

Every relative link in a notebook's markdown or in a markdown file points at a file that
exists, and every "chapter NN" names a chapter notebook that exists — or says "(coming)"
for a chapter not written yet, a mark that must go once that chapter lands.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
NUMBER = r"\d\d[a-d]?"
REFERENCE = re.compile(rf"\b[Cc]hapters?\s+({NUMBER}(?:\s*(?:,|and|or|to|–|-)\s*{NUMBER})*)(.{{0,12}})", re.S)


def tracked_texts() -> list[tuple[str, str]]:
    """(where, markdown) for every markdown cell of the tracked notebooks and every tracked .md file."""
    files = subprocess.run(["git", "ls-files", "*.ipynb", "*.md"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    texts = []
    for name in files:
        path = REPO / name
        if name.endswith(".ipynb"):
            cells = json.loads(path.read_text())["cells"]
            texts += [(f"{name} cell {k}", "".join(c["source"])) for k, c in enumerate(cells) if c["cell_type"] == "markdown"]
        else:
            texts.append((name, path.read_text()))
    return texts


TEXTS = tracked_texts()
CHAPTERS = sorted(p.name.split("_")[0] for p in (REPO / "chapters").glob("*.ipynb"))


def chapter_exists(number: str) -> bool:
    """'06' exists when any of 06a, 06b … does; '06b' only when 06b does."""
    return any(c == number or (len(number) == 2 and c.startswith(number)) for c in CHAPTERS)


def test_the_texts_were_found():
    assert len(TEXTS) > 100 and len(CHAPTERS) >= 12


def test_relative_links_resolve():
    broken = []
    for where, text in TEXTS:
        source = REPO / where.split(" cell ")[0]
        broken += [f"{where}: {target}" for target in LINK.findall(text)
                   if not target.startswith(("http://", "https://", "#", "mailto:"))
                   and not (source.parent / target.split("#")[0]).exists()]
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_chapter_references_name_chapters_that_exist():
    wrong = []
    for where, text in TEXTS:
        for match in REFERENCE.finditer(text):
            numbers = re.findall(NUMBER, match.group(1))
            coming = "coming" in match.group(2)
            shown = " ".join(match.group(0).split())
            for number in numbers:
                if not chapter_exists(number) and not coming:
                    wrong.append(f"{where}: chapter {number} does not exist (write it, or say "
                                 f"'chapter {number} (coming)'): …{shown}…")
            if coming and all(chapter_exists(n) for n in numbers):
                wrong.append(f"{where}: chapter {match.group(1)} exists now, drop its '(coming)': …{shown}…")
    assert not wrong, "\n".join(wrong)
