"""Whether the results of two runs may be set side by side: the one check ``compare`` and ``leaderboard`` share.

Two runs are comparable when they asked the same questions of the same data:

* **prompts** — every prompt key (dataset, image, object, protocol, level, draw) both runs hold has the
  same stored ``prompt_hash`` and ``protocol_version``, whatever model answered it (prompts are keyed
  without the model, so every model of every run must have seen the same prompt); and every protocol both
  manifests name has the same ``version`` and the same decoding (``identity.mask_selection`` and
  ``identity.preprocessing``: the same prompts decoded differently are other results);
* **datasets** — every dataset both manifests name has the same ``content_hash``;
* **models** (only asked for by the leaderboard, since ``compare`` exists to set two versions of one model
  against each other) — a model both manifests name has the same signature identity (adapter, its version,
  weights hash, variant, options, plug-in: ``sambench.store.MODEL_IDENTITY``, what a resumed run must keep).

The manifests' per-dataset prompt-set hash is not compared: it covers every stored prompt, so it differs
between a run and a ``--limit``/``--levels`` subset of it whose shared prompts are identical; the per-key
hashes are exact. :func:`find_mismatches` returns the problems as short phrases; callers decide whether
to refuse (one line naming both runs) or warn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sambench.analysis.noc import click_protocols
from sambench.store import KEY_COLUMNS, MODEL_IDENTITY, PROMPT_COLUMNS

#: A prompt's key: the result key without the model (every model of a protocol gets the same prompts).
PROMPT_KEY = list(PROMPT_COLUMNS)
#: Protocol identity fields that change the masks of the same prompts.
DECODING = ("mask_selection", "preprocessing")


@dataclass
class Mismatches:
    """Problems found between two runs, as short phrases (empty lists: comparable)."""

    prompts: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.prompts or self.datasets or self.models)

    def all(self) -> list[str]:
        return self.datasets + self.prompts + self.models


def _entry(section: dict, name: str) -> dict:
    e = section.get(name)
    return e if isinstance(e, dict) else {}


def manifest_mismatches(a: dict, b: dict, models: bool = False) -> Mismatches:
    """Protocol versions and decoding, dataset content hashes (and model identities) of two manifests."""
    out = Mismatches()
    ap, bp = a.get("protocols") or {}, b.get("protocols") or {}
    for name in sorted(set(ap) & set(bp)):
        va, vb = _entry(ap, name).get("version"), _entry(bp, name).get("version")
        if va is not None and vb is not None and va != vb:
            out.prompts.append(f"protocol '{name}' version {va} vs {vb}")
        ia, ib = _entry(ap, name).get("identity") or {}, _entry(bp, name).get("identity") or {}
        for key in DECODING:
            if key in ia and key in ib and ia[key] != ib[key]:
                out.prompts.append(f"protocol '{name}' {key} {ia[key]} vs {ib[key]}")
    ad, bd = a.get("datasets") or {}, b.get("datasets") or {}
    for name in sorted(set(ad) & set(bd)):
        ha, hb = _entry(ad, name).get("content_hash"), _entry(bd, name).get("content_hash")
        if ha is not None and hb is not None and ha != hb:
            out.datasets.append(f"dataset '{name}' content hash {str(ha)[:12]} vs {str(hb)[:12]}")
    if models:
        am, bm = a.get("models") or {}, b.get("models") or {}
        for name in sorted(set(am) & set(bm)):
            sa, sb = _entry(am, name), _entry(bm, name)
            for key in MODEL_IDENTITY:
                if key in sa and key in sb and sa[key] != sb[key]:
                    out.models.append(f"model '{name}' {key} {_short(sa[key])} vs {_short(sb[key])}")
    return out


def _short(v) -> str:
    s = str(v)
    return s[:12] if len(s) == 64 and all(c in "0123456789abcdef" for c in s) else s


def key_text(row, columns=KEY_COLUMNS) -> str:
    return ", ".join(f"{k}={row[k]}" for k in columns if k in row)


def first_clicks_only(rows: pd.DataFrame, interactive) -> pd.DataFrame:
    """``rows`` without the levels of interactive (``kind: clicks``) protocols after their first: a click
    after the first depends on the model's own previous mask, so only the first click (or start box) is a
    prompt every model shares."""
    if not interactive or rows.empty:
        return rows
    inter = rows["protocol"].isin(list(interactive))
    lv = pd.to_numeric(rows["level"], errors="coerce")
    first = lv.where(inter).groupby(rows["protocol"]).transform("min")
    return rows[~inter | (lv == first)]


def prompt_mismatches(rows_a: pd.DataFrame, rows_b: pd.DataFrame, interactive=frozenset()) -> list[str]:
    """One phrase (count and first example) when a prompt key of both runs has another prompt hash or
    protocol version in ``rows_b`` than in ``rows_a``, compared row by row of ``rows_b`` (any model).
    ``interactive``: click protocols, compared at their first level only (:func:`first_clicks_only`)."""
    rows_a, rows_b = first_clicks_only(rows_a, interactive), first_clicks_only(rows_b, interactive)
    cols = PROMPT_KEY + ["prompt_hash", "protocol_version"]
    a = rows_a[rows_a["prompt_hash"].notna()][cols].drop_duplicates()
    b = rows_b[rows_b["prompt_hash"].notna()]
    b = b[[c for c in list(KEY_COLUMNS) if c in b.columns] + cols[len(PROMPT_KEY):]]
    m = b.merge(a, on=PROMPT_KEY, how="inner", suffixes=("_b", "_a"))
    if m.empty:
        return []
    differ = (m["prompt_hash_b"] != m["prompt_hash_a"]) | (
        m["protocol_version_b"].notna() & m["protocol_version_a"].notna() &
        (m["protocol_version_b"] != m["protocol_version_a"]))
    bad = m[differ].drop_duplicates(list(KEY_COLUMNS) if "model" in m.columns else PROMPT_KEY)
    if bad.empty:
        return []
    return [f"{len(bad)} key(s) with different prompts, e.g. {key_text(bad.iloc[0])}"]


def find_mismatches(rows_a: pd.DataFrame, man_a: dict, rows_b: pd.DataFrame, man_b: dict,
                    models: bool = False) -> Mismatches:
    """Everything that makes two runs incomparable (see the module docstring)."""
    out = manifest_mismatches(man_a, man_b, models=models)
    out.prompts.extend(prompt_mismatches(rows_a, rows_b, click_protocols([man_a, man_b])))
    return out


def expand_image_failures(df: pd.DataFrame, other: pd.DataFrame, by_model: bool = True) -> pd.DataFrame:
    """Replace each image-level failure of ``df`` (``level == ''``) by failed rows for every object row
    ``other`` has for the same image and protocol — of the same model (``by_model``, as ``compare`` pairs a
    model with itself), or of any model (the leaderboard: an image a model could not read stands for every
    prompt the other models answered on it). Image failures with no counterpart stay as they are."""
    img = df[(df["status"] == "failed") & (df["level"] == "")]
    if img.empty:
        return df
    scope = ["model", "dataset", "image_id", "protocol"] if by_model else ["dataset", "image_id", "protocol"]
    targets = other[other["level"] != ""]
    if by_model:
        targets = targets[list(KEY_COLUMNS) + ["protocol_version"]]
    else:
        targets = targets[PROMPT_KEY + ["protocol_version", "level_value"]].drop_duplicates(PROMPT_KEY)
    synth = targets.merge(img[list(dict.fromkeys(scope + ["model", "error"]))], on=scope, how="inner")
    if synth.empty:
        return df
    synth = synth.assign(status="failed", iou=np.nan, biou=np.nan, prompt_hash=None)
    covered = set(map(tuple, synth[["model"] + scope[-3:]].drop_duplicates().to_numpy().tolist()))
    drop = [i for i, t in zip(img.index, map(tuple, img[["model"] + scope[-3:]].to_numpy().tolist())) if t in covered]
    return pd.concat([df.drop(index=drop), synth], ignore_index=True)
