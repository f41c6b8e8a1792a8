"""Prompt settings of stored rows: each (protocol, level) as its card's :class:`~sambench.config.Setting`.

A setting's *kind* (``gt-box``, ``noisy-box``, ``box-shift``, ``box-scale``, ``points``, ``clicks``) and its
position in the card come from the manifests' protocol identities (their ``settings`` lists), its
``level_value`` from the rows; a level no manifest declares has kind ``unknown`` (``gt-box`` when so named).
The report orders its tables and figures by these settings and the leaderboard's headline scores read
them (which level is the GT box, which are degraded, where a degradation curve's points lie).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import pandas as pd

from sambench.config import Setting


def _num(v) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _declared(manifests: list[dict]) -> dict[tuple[str, str], tuple[Setting, int]]:
    """(protocol, level) → (setting, position in its card) from the manifests' protocol identities."""
    declared: dict[tuple[str, str], tuple[Setting, int]] = {}
    for man in manifests:
        for pname, entry in (man.get("protocols") or {}).items():
            ident = entry.get("identity") if isinstance(entry, dict) else None
            for i, d in enumerate((ident or {}).get("settings") or []):
                if isinstance(d, dict) and "level" in d:
                    declared.setdefault((pname, str(d["level"])), (Setting.from_dict(d, pname), i))
    return declared


def settings_info(df: pd.DataFrame, manifests: list[dict]) -> list[Setting]:
    """Every (protocol, level) of the rows as the card's :class:`~sambench.config.Setting` (recorded in the
    manifest; a level no manifest declares has kind ``unknown``, or ``gt-box`` by its name), with the
    rows' ``level_value``; ordered: protocols by name, then the card's own level order, else GT box first
    then by numeric value and level."""
    declared = _declared(manifests)
    rows = df[df["level"] != ""]
    ordered = []
    for (protocol, level), g in rows.groupby(["protocol", "level"], sort=False):
        value = _num(g["level_value"].iloc[0]) if "level_value" in g else None
        setting, order = declared.get((protocol, level), (None, 10 ** 6))
        if setting is None:
            setting = Setting(str(level), "gt-box" if level == "gt-box" else "unknown", (), value, str(protocol))
        ordered.append((order, replace(setting, level_value=value)))

    def sort_key(item: tuple[int, Setting]):
        order, s = item
        return (s.protocol, order, 0 if s.is_gt_box else 1, s.level_value if s.level_value is not None else -1.0,
                s.level)

    return [s for _, s in sorted(ordered, key=sort_key)]
