"""The emoji catalogue: names, categories and skin-tone relations from emoji-datasource's ``emoji.json``.

The *identity* of an image is its base emoji: every skin-tone variant (and an emoji and the
gendered emoji that obsoletes it) share one identity, the unit of the split. Vendors spell file
names differently (case, FE0F, leading zeros, ``_`` or ``-``, a dropped CANCEL TAG);
:func:`normalize_code` maps them all to one key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

UNKNOWN_CATEGORY = "unknown"
SKIN_TONES = {"1F3FB": "light skin tone", "1F3FC": "medium-light skin tone", "1F3FD": "medium skin tone",
              "1F3FE": "medium-dark skin tone", "1F3FF": "dark skin tone"}
CANCEL_TAG = 0xE007F   # ends a tag sequence (subdivision flags); some vendors drop it from file names


def normalize_code(code: str) -> str:
    """``"1F3C3-200D-2642-FE0F"``, ``"1f3c3-200d-2642"`` and ``"emoji_u1f3c3_200d_2642"`` alike:
    lowercase hex without leading zeros or FE0F (Twemoji drops both, emoji-datasource keeps them);
    a tag sequence without its closing CANCEL TAG gets it back (Fluent's subdivision flags)."""
    code = code.lower().removeprefix("emoji_u").replace("_", "-")
    try:
        points = [int(p, 16) for p in code.split("-") if p and p != "fe0f"]
    except ValueError:
        return ""
    if points and 0xE0020 <= points[-1] < CANCEL_TAG:
        points.append(CANCEL_TAG)
    return "-".join(format(p, "x") for p in points)


@dataclass(frozen=True)
class Emoji:
    code: str          # the image's own unified code, as in emoji.json
    identity: str      # short name of the base emoji: the split's unit
    name: str          # human-readable name of this very image (with its skin tone)
    category: str
    order: int         # emoji.json sort_order, for a stable row order
    subcategory: str = UNKNOWN_CATEGORY   # emoji.json's finer group within the category ("face-smiling", ...)


def load_catalog(emoji_json: str | os.PathLike) -> dict[str, Emoji]:
    """Map every normalized code of ``emoji.json`` (bases, non-qualified forms, skin variants)
    to an :class:`Emoji`. An emoji obsoleted by a gendered one (RUNNER -> MAN RUNNING, which
    many vendors draw alike) shares that one's identity."""
    entries = json.loads(Path(emoji_json).read_text())
    by_code = {e["unified"]: e for e in entries}
    table: dict[str, Emoji] = {}
    for e in entries:
        base = by_code.get(e.get("obsoleted_by") or "", e)
        identity = base["short_name"]
        name = (e.get("name") or e["short_name"]).lower()
        category = e.get("category") or UNKNOWN_CATEGORY
        row = Emoji(e["unified"], identity, name, category, int(e.get("sort_order", 0)),
                    e.get("subcategory") or UNKNOWN_CATEGORY)
        for code in (e["unified"], e.get("non_qualified")):
            if code:
                table.setdefault(normalize_code(code), row)
        for tones, var in (e.get("skin_variations") or {}).items():
            tone = ", ".join(SKIN_TONES.get(t, t) for t in tones.split("-"))
            vrow = Emoji(var["unified"], identity, f"{name}: {tone}", row.category, row.order, row.subcategory)
            for code in (var["unified"], var.get("non_qualified")):
                if code:
                    table.setdefault(normalize_code(code), vrow)
    return table

