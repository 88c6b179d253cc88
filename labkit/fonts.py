"""Chinese in figures: matplotlib ships no Chinese font, so the course ships one and registers it.

``register_chinese_font()`` (run by ``import labkit``) adds Noto Sans CJK SC — cut down to the
characters the course can draw, ``datasets/fonts/`` — to matplotlib and puts it after the
default family in ``font.family``: Latin text looks as before, and each Chinese character falls back
to the Noto font. A title such as ``ax.set_title("唐诗 · 字频")`` then renders instead of boxes.

The shipped subset has one weight (regular). It is registered as the bold face too: matplotlib
looks up every family of ``font.family`` for each text, so without it any bold text, Chinese or not,
logs "findfont: Failed to find font weight bold for Noto Sans CJK SC"; bold Chinese characters are
drawn in the regular weight either way.
"""
from __future__ import annotations

import dataclasses

__all__ = ["register_chinese_font", "CHINESE_FONT"]

CHINESE_FONT = "Noto Sans CJK SC"
_registered = False


def register_chinese_font() -> bool:
    """Register the course's Chinese font with matplotlib (once); False if it could not be
    (the font file missing or damaged: ``labkit.doctor()`` says how to restore it)."""
    global _registered
    if _registered:
        return True
    try:
        import matplotlib
        from matplotlib import font_manager

        from .data import cjk_font_path

        path = str(cjk_font_path())
        font_manager.fontManager.addfont(path)
        regular = next(entry for entry in font_manager.fontManager.ttflist if entry.fname == path)
        # the same file as the bold face (see the module's docstring), so bold text finds an exact weight
        font_manager.fontManager.ttflist.append(dataclasses.replace(regular, weight=700))
    except Exception:  # never stop `import labkit` over a font: figures fall back to boxes
        return False
    family = matplotlib.rcParams["font.family"]
    family = [family] if isinstance(family, str) else list(family)
    if CHINESE_FONT not in family:
        # after the default family: Latin text is unchanged, and a character that font lacks falls
        # back to the next family in the list (matplotlib ≥ 3.6 looks glyph by glyph)
        matplotlib.rcParams["font.family"] = family + [CHINESE_FONT]
    _registered = True
    return True
