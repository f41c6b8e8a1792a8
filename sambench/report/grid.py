"""The visual grid of a report: which (object, prompt) rows it shows, and each row's photo, GT and masks.

Rows are picked by :func:`pick_grid_keys` (the prompts whose IoU differs most between models, or named
objects); :func:`build_grid_items` decodes every model's stored mask for them and attaches the photo and GT
(:class:`Images`: from an ``image_loader`` callable when given, else from the datasets the manifests
record, reopened with ``sambench.datasets.DatasetSpec``; without either the grid shows masks on a grey
canvas and the page says so). ``sambench.report.figures.grid_figure`` draws them.
"""

from __future__ import annotations

import json
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from sambench.datasets import DatasetSpec
from sambench.inputs.corruptions import CLEAN, corrupt_keyed
from sambench.metrics import decode_rle
from sambench.report import figures as F
from sambench.report.context import ReportFiles, ReportInputs
from sambench.report.html import Section, figure_html
from sambench.store import PROMPT_COLUMNS
from sambench.types import SambenchError, first_line

#: A grid row is one realised prompt, shown for every model.
GRID_KEY = list(PROMPT_COLUMNS)
DEFAULT_GRID_ROWS = 4


def parse_grid_object(spec: str) -> dict:
    """``dataset/image/object`` (image ids may contain ``/``), optionally ``@protocol:level:draw``."""
    text, _, where = str(spec).partition("@")
    parts = text.split("/")
    if len(parts) < 3 or not parts[0] or not parts[-1]:
        raise SambenchError(f"grid object '{spec}': expected dataset/image/object[@protocol:level:draw]")
    out = {"dataset": parts[0], "image_id": "/".join(parts[1:-1]), "object_id": parts[-1]}
    if where:
        w = where.split(":")
        if len(w) != 3:
            raise SambenchError(f"grid object '{spec}': the part after '@' must be protocol:level:draw")
        try:
            out.update(protocol=w[0], level=w[1], draw=int(w[2]))
        except ValueError:
            raise SambenchError(f"grid object '{spec}': draw '{w[2]}' is not an integer") from None
    return out


def spread_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (object, prompt) key: IoU of each model and ``spread`` = max − min over models (with one model,
    1 − IoU: its worst results are the informative ones). Only successful rows; sorted by spread desc then key."""
    ok = df[(df["status"] == "ok") & (df["level"] != "") & df["iou"].notna()]
    if ok.empty:
        return pd.DataFrame(columns=GRID_KEY + ["spread", "n_models"])
    piv = ok.pivot_table(index=GRID_KEY, columns="model", values="iou", aggfunc="first")
    n_models = piv.notna().sum(axis=1)
    spread = piv.max(axis=1) - piv.min(axis=1) if piv.shape[1] > 1 else 1.0 - piv.iloc[:, 0]
    out = pd.DataFrame({"spread": spread, "n_models": n_models}).reset_index()
    full = out["n_models"] == piv.shape[1]
    out = out.assign(_full=full).sort_values(["_full", "spread"] + GRID_KEY, ascending=[False, False] + [True] * len(GRID_KEY),
                                             kind="stable")
    return out.drop(columns="_full").reset_index(drop=True)


def pick_grid_keys(df: pd.DataFrame, grid_objects: Optional[Sequence] = None, n: int = DEFAULT_GRID_ROWS) -> list[dict]:
    """The (object, prompt) keys of the grid rows.

    Default: the ``n`` keys with the largest spread of IoU between models (keys every model answered
    first), at most one per object, ties broken by key order — deterministic. Named objects
    (``dataset/image/object[@protocol:level:draw]`` strings or dicts) take their own largest-spread
    prompt unless the prompt is named too.
    """
    table = spread_table(df)
    picks: list[dict] = []
    if grid_objects:
        for spec in grid_objects:
            want = parse_grid_object(spec) if isinstance(spec, str) else dict(spec)
            sel = table
            for k, v in want.items():
                sel = sel[sel[k].astype(str) == str(v)]
            if sel.empty:
                raise SambenchError(f"grid object '{spec}': no successful result for it in these runs")
            picks.append({k: sel.iloc[0][k] for k in GRID_KEY})
        return picks
    corrupted = table["severity"] > 0 if "severity" in table.columns else pd.Series(False, index=table.index)
    # Runs with corrupted images show both: half the rows on clean images, half on corrupted ones.
    quota = [(table[~corrupted], n - n // 2 if corrupted.any() else n), (table[corrupted], n // 2)]
    for part, k in quota:  # the first (largest-spread) key of each object, for the first k objects
        firsts = part.drop_duplicates(["dataset", "image_id", "object_id"]).head(k)
        picks.extend(dict(zip(GRID_KEY, key)) for key in firsts[GRID_KEY].itertuples(index=False, name=None))
    return picks


# ------------------------------------------------------------------------------------------ images


class Images:
    """Photo + GT objects per (dataset, image): from ``image_loader``, else the manifest's dataset spec."""

    def __init__(self, manifests: list[dict], image_loader: Optional[Callable]) -> None:
        self.manifests = manifests
        self.specs: dict = {}
        for man in manifests:
            for name, entry in (man.get("datasets") or {}).items():
                if isinstance(entry, dict) and isinstance(entry.get("spec"), dict):
                    self.specs.setdefault(name, entry["spec"])
        self.loader = image_loader
        self.opened: dict = {}
        self.notes: list[str] = []

    def _dataset(self, name: str):
        if name in self.opened:
            return self.opened[name]
        ds, reason = None, ""
        spec = self.specs.get(name)
        if spec is None:
            reason = "the manifest records no dataset spec"
        else:
            try:
                ds = DatasetSpec.from_dict(spec).open()
            except Exception as exc:  # any failure to reopen is reported, the grid still renders
                reason = f"{type(exc).__name__}: {first_line(exc, empty='')}"
        if ds is None:
            self.notes.append(f"dataset '{name}' could not be reopened ({reason}); the grid shows its masks "
                              f"without {'GT' if self.loader else 'photo or GT'}")
        self.opened[name] = ds
        return ds

    def corrupted(self, image: np.ndarray, dataset: str, image_id: str, corruption: tuple[str, int]) -> Optional[np.ndarray]:
        """The image the model saw: ``image`` under ``corruption`` with the runs' corruption seed (from the
        manifest), or None (with a note) when that cannot be reproduced."""
        seeds = {m.get("corruptions", {}).get("seed") for m in self.manifests if m.get("corruptions")}
        seeds.discard(None)
        if len(seeds) != 1:
            self.notes.append(f"the manifests do not give one corruption seed ({sorted(seeds)}); corrupted grid rows "
                              f"show no photo")
            return None
        try:
            return corrupt_keyed(image, corruption[0], corruption[1], seeds.pop(), dataset, image_id)
        except SambenchError as exc:
            self.notes.append(f"could not corrupt {dataset}/{image_id} for the grid ({exc})")
            return None

    def load(self, dataset: str, image_id: str) -> tuple[Optional[np.ndarray], Optional[dict]]:
        """(RGB image or None, {object_id: bool mask} or None)."""
        image, objects = None, None
        if self.loader is not None:
            try:
                res = self.loader(dataset, image_id)
            except Exception as exc:
                self.notes.append(f"image_loader failed on {dataset}/{image_id} ({type(exc).__name__}: {exc})")
                res = None
            if res is not None and hasattr(res, "image"):
                image = np.asarray(res.image)
                objects = {str(o.id): np.asarray(o.mask, dtype=bool) for o in getattr(res, "objects", [])} or None
            elif res is not None:
                image = np.asarray(res)
        if objects is None:
            ds = self._dataset(dataset)
            if ds is not None:
                try:
                    sample = ds.load(image_id)
                    image = image if image is not None else np.asarray(sample.image)
                    objects = {str(o.id): np.asarray(o.mask, dtype=bool) for o in sample.objects}
                except Exception as exc:
                    self.notes.append(f"could not load {dataset}/{image_id} for the grid ({type(exc).__name__}: {exc})")
        if image is not None and (image.ndim == 2):
            image = np.repeat(image[..., None], 3, axis=2)
        if image is not None and image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        return image, objects


def build_grid_items(df: pd.DataFrame, keys: list[dict], images: Images) -> list[F.GridItem]:
    """Decode each model's mask (RLE from the store) and attach photo/GT for every grid key."""
    items = []
    for key in keys:
        sel = df
        for k in GRID_KEY:
            sel = sel[sel[k] == key[k]]
        sel = sel[sel["status"] == "ok"]
        prompt = json.loads(sel["prompt"].dropna().iloc[0]) if sel["prompt"].notna().any() else {}
        masks, ious, extras, shape = {}, {}, {}, None
        for _, r in sel.iterrows():
            if isinstance(r["mask_rle"], str) and r["mask_rle"]:
                rle = json.loads(r["mask_rle"])
                masks[r["model"]] = decode_rle(rle)
                shape = tuple(int(v) for v in rle["size"])
            ious[r["model"]] = None if pd.isna(r["iou"]) else float(r["iou"])
            try:
                extras[r["model"]] = json.loads(r["extras"]) if isinstance(r["extras"], str) and r["extras"] else None
            except ValueError:
                extras[r["model"]] = None
        image, objects = images.load(str(key["dataset"]), str(key["image_id"]))
        corruption = (str(key.get("corruption", CLEAN)), int(key.get("severity", 0)))
        if image is not None and corruption[1]:
            image = images.corrupted(image, str(key["dataset"]), str(key["image_id"]), corruption)
        gt = (objects or {}).get(str(key["object_id"]))
        if shape is None:
            shape = gt.shape if gt is not None else (image.shape[:2] if image is not None else (1, 1))
        if image is not None and image.shape[:2] != shape:
            images.notes.append(f"{key['dataset']}/{key['image_id']}: reopened image is {image.shape[:2]}, the stored "
                                f"masks are {shape}; the photo is not shown")
            image = None
        if gt is not None and gt.shape != shape:
            gt = None
        items.append(F.GridItem(dataset=str(key["dataset"]), image_id=str(key["image_id"]),
                                object_id=str(key["object_id"]), protocol=str(key["protocol"]), level=str(key["level"]),
                                draw=int(key["draw"]), prompt=prompt, shape=shape, masks=masks, ious=ious,
                                extras=extras, image=image, gt=gt, corruption=corruption))
    return items


def grid_section(out: ReportFiles, inputs: ReportInputs, grid_objects, n_grid: int, image_loader) -> list[Section]:
    """The visual grid: photo + prompt, GT and every model's mask for the chosen prompts (image protocols: a
    video row's mask is its prompt frame's, shown by the video section's strip instead)."""
    df = inputs.df[~inputs.df["protocol"].isin(inputs.video_protocols)]
    if df.empty and not inputs.df.empty:
        return []  # video rows only
    keys = pick_grid_keys(df, grid_objects, n_grid)
    if not keys:
        out.notes.append("no successful result with a mask: no visual grid")
        return []
    images = Images(inputs.manifests, image_loader)
    items = build_grid_items(df, keys, images)
    fig = F.grid_figure(items, sorted(df["model"].unique()), inputs.colors)
    files = out.figure(fig, "grid", dpi=F.GRID_DPI)
    out.notes.extend(dict.fromkeys(images.notes))
    how = "named objects" if grid_objects else "the objects whose IoU differs most between models (one prompt each)"
    return [Section("grid", "Visual comparison", figure_html(
        "grid", out.pngs["grid"], f"Rows: {how}. Columns: photo with the prompt (box; green + / red − points), "
        "GT (amber), each model's mask in its colour with its IoU; cyan circles: sampling locations "
        "(sized by weight) when the model records them.", files))]
