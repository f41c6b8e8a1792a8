"""Declarative YAML cards: ``models/*.yaml`` and ``protocols/*.yaml``, read into plain dataclasses.

Cards are looked up, in order, in every directory of ``$SAMBENCH_CARDS`` (``os.pathsep``-separated;
each may hold ``models/`` and ``protocols/`` subdirectories or be one itself), in ``./models`` and
``./protocols`` of the working directory, and in the cards shipped with sambench (the repository's
``models/`` and ``protocols/``; a non-editable install copies them to ``<prefix>/share/sambench/``). The first card with a given name wins, so a user can shadow a shipped
card by copying it.

YAML is read with ``yaml.safe_load``; every problem is raised as :class:`SambenchError` with one line
naming the file and what is wrong.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from sambench.types import SambenchError, did_you_mean

REPO_ROOT = Path(__file__).resolve().parents[2]


def card_dirs(section: str) -> list[Path]:
    """Directories searched for ``section`` cards (``models`` or ``protocols``), highest priority first."""
    dirs: list[Path] = []
    for entry in filter(None, os.environ.get("SAMBENCH_CARDS", "").split(os.pathsep)):
        p = Path(entry)
        dirs.append(p / section if (p / section).is_dir() else p)
    dirs.append(Path.cwd() / section)
    dirs.append(REPO_ROOT / section)  # a checkout / editable install
    dirs.append(Path(sys.prefix) / "share" / "sambench" / section)  # a wheel install (pyproject data-files)
    seen, out = set(), []
    for d in dirs:
        r = d.resolve()
        if r not in seen and d.is_dir():
            seen.add(r)
            out.append(d)
    return out


def read_yaml(path: Path) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SambenchError(f"{path}: malformed YAML{where}: {problem}") from None
    except OSError as exc:
        raise SambenchError(f"{path}: cannot read card: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise SambenchError(f"{path}: a card must be a YAML mapping, got {type(data).__name__}")
    return data


def _require(data: dict, key: str, typ: Any, path: Path) -> Any:
    if key not in data:
        raise SambenchError(f"{path}: missing required field '{key}'")
    value = data[key]
    if not isinstance(value, typ):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise SambenchError(f"{path}: field '{key}' must be {name}, got {type(value).__name__}")
    return value


def _check_fields(data: dict, allowed: set, path: Path) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SambenchError(f"{path}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


# --------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class CheckpointSpec:
    """The official weights a model card names: file name, download address, size and hash."""

    file: str
    url: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    #: Hex prefix that the official file name carries (``sam_vit_b_01ec64.pth`` → ``01ec64``: Meta's names
    #: carry the start of the file's MD5), or any longer prefix up to a full digest; checked against the
    #: MD5 and the SHA-256 of the file's bytes (either may match; see sambench/checkpoints.py).
    hash_prefix: Optional[str] = None


@dataclass(frozen=True)
class ModelCard:
    name: str
    adapter: str
    description: str
    options: dict
    checkpoint: Optional[CheckpointSpec]
    path: Optional[Path]
    raw: dict = field(default_factory=dict, compare=False)
    tags: tuple = ()
    #: Free text naming the model's paper and/or URL (optional ``paper:`` field); shown on leaderboards.
    paper: Optional[str] = None


#: ``base`` is read by the stable-sam adapter (the card its plug-in sits on, sambench/stable_sam/base.py).
#: ``tags`` are free words shown by ``sambench list models``; ``paper`` is shown by ``sambench leaderboard``.
MODEL_FIELDS = {"name", "adapter", "description", "options", "checkpoint", "base", "tags", "paper"}


def parse_model_card(data: dict, path: Path) -> ModelCard:
    _check_fields(data, MODEL_FIELDS, path)
    name = _require(data, "name", str, path)
    adapter = _require(data, "adapter", str, path)
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise SambenchError(f"{path}: field 'options' must be a mapping")
    ckpt = None
    if data.get("checkpoint") is not None:
        c = data["checkpoint"]
        if not isinstance(c, dict) or "file" not in c:
            raise SambenchError(f"{path}: field 'checkpoint' must be a mapping with at least 'file'")
        _check_fields(c, {"file", "url", "size", "sha256", "hash_prefix"}, path)
        ckpt = CheckpointSpec(**c)
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SambenchError(f"{path}: field 'tags' must be a list of words")
    paper = data.get("paper")
    if paper is not None and not isinstance(paper, str):
        raise SambenchError(f"{path}: field 'paper' must be a string (citation and/or URL)")
    return ModelCard(name=name, adapter=adapter, description=str(data.get("description", "")).strip(),
                     options=dict(options), checkpoint=ckpt, path=path, raw=data, tags=tuple(tags), paper=paper)


# ------------------------------------------------------------------------------------------ protocols

#: Preprocessing modes a protocol may ask for (adapters implement them, sambench/adapters/base.py).
#: ``sam``: the model's own transform (SAM: longest side to 1024, pad to square).
#: ``hq-sam-1024``: image and prompts resized to 1024×1024 without keeping aspect (HQ-SAM's evaluation).
PREPROCESSING_MODES = ("sam", "hq-sam-1024")

#: Frames a box setting's GT box is measured in (sambench/prompts.py ``box_in_frame``). ``label``: the
#: original label's extreme foreground pixels. ``hq-sam-1024``: HQ-SAM's evaluation box, taken from the
#: label resized to 1024×1024 without keeping aspect, expressed back in original pixels.
BOX_FRAMES = ("label", "hq-sam-1024")

#: Mask-selection policies. ``single``: one mask per prompt (``multimask_output=False``).
#: ``best-of-3``: three masks, keep the one with the highest predicted IoU.
MASK_SELECTIONS = ("single", "best-of-3")

#: Prompt kinds a protocol setting can generate (see sambench/prompts.py; ``clicks``: sambench/clicks.py).
PROMPT_KINDS = ("gt-box", "noisy-box", "box-shift", "box-scale", "points", "clicks")
#: The parameter a homogeneous protocol's ``levels`` list sets, per kind.
LEVEL_PARAM = {"gt-box": None, "noisy-box": "scale", "box-shift": "scale", "box-scale": "scale", "points": "k"}
#: Card fields of the interactive protocol (``kind: clicks``; its levels are the clicks 1..max_clicks).
CLICK_CARD_FIELDS = ("max_clicks", "start", "start_scale", "feed_logits")
PROTOCOL_FIELDS = {"name", "version", "description", "kind", "levels", "settings", "draws", "seed",
                   "mask_selection", "preprocessing", "negatives", "reference", "corruptions", "box_frame",
                   *CLICK_CARD_FIELDS}
SETTING_FIELDS = {"level", "kind", "scale", "k", "negatives", "box_frame"}


#: Prompt kinds whose setting is a box with noise of scale ``scale`` (0 = the GT box).
BOX_NOISE_KINDS = ("noisy-box", "box-shift", "box-scale")
#: Prompt kinds whose prompt is a box derived from the GT box (the kinds ``box_frame`` applies to).
BOX_KINDS = ("gt-box", *BOX_NOISE_KINDS)


@dataclass(frozen=True)
class Setting:
    """One level of a protocol: its ``level`` (the name rows are stored under), the prompt ``kind`` and its parameters.

    The one level type from card to report: protocols realise prompts from it, the store records
    ``level`` and ``level_value``, the report reads it back from the manifest (:meth:`from_dict`).
    ``level_value`` is the numeric x of degradation curves (noise scale, number of points) or None.
    ``protocol`` names the card it belongs to (not part of its identity).
    """

    level: str
    kind: str
    params: tuple  # sorted (key, value) pairs, hashable
    level_value: Optional[float]
    protocol: str = field(default="", compare=False)

    @property
    def deterministic(self) -> bool:
        """GT boxes (and zero-noise boxes, and click sequences not started from a noisy box) do not depend on
        the draw: one draw is enough."""
        if self.kind == "clicks":
            return dict(self.params).get("start") != "noisy-box"
        return self.kind == "gt-box" or (self.kind in BOX_NOISE_KINDS and dict(self.params).get("scale") == 0)

    @property
    def is_gt_box(self) -> bool:
        """True for the tight GT box: level/kind ``gt-box`` or a box-noise level of value 0."""
        if self.level == "gt-box" or self.kind == "gt-box":
            return True
        return self.kind in BOX_NOISE_KINDS and self.level_value is not None and float(self.level_value) == 0.0

    @property
    def family(self) -> str:
        """``box``, ``points`` or ``clicks``: the x axis a degradation curve of this setting belongs to."""
        return self.kind if self.kind in ("points", "clicks") else "box"

    def to_dict(self) -> dict:
        return {"level": self.level, "kind": self.kind, **dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict, protocol: str = "") -> "Setting":
        """The setting a manifest's protocol identity records (``to_dict``); an entry this sambench cannot
        validate (e.g. a kind from another version) is kept as recorded, without a level value."""
        params = {k: v for k, v in d.items() if k not in ("level", "kind")}
        try:
            return make_setting(str(d.get("kind")), params, d.get("level"), f"protocol '{protocol}'", protocol)
        except SambenchError:
            return Setting(str(d.get("level")), str(d.get("kind", "unknown")), tuple(sorted(params.items(), key=str)),
                           None, protocol)


@dataclass(frozen=True)
class ProtocolCard:
    name: str
    version: int
    description: str
    settings: tuple
    draws: int
    seed: int
    mask_selection: str
    preprocessing: str
    path: Optional[Path]
    raw: dict = field(default_factory=dict, compare=False)
    #: ``--corruption`` specs (sambench/corruptions.py) this protocol always runs under, besides clean.
    corruptions: tuple = ()

    def setting(self, level: str) -> Setting:
        for s in self.settings:
            if s.level == level:
                return s
        raise SambenchError(f"protocol '{self.name}' has no level '{level}' (levels: {', '.join(s.level for s in self.settings)})")

    def draws_for(self, setting: Setting) -> int:
        return 1 if setting.deterministic else self.draws

    @property
    def clicks(self):
        """The :class:`sambench.inputs.clicks.ClickSettings` of an interactive (``kind: clicks``) card, else None."""
        if not self.settings or self.settings[0].kind != "clicks":
            return None
        from sambench.inputs.clicks import ClickSettings

        p = dict(self.settings[0].params)
        return ClickSettings(**{k: p[k] for k in CLICK_CARD_FIELDS})

    def identity(self) -> dict:
        """Everything that determines the prompts and decoding: recorded in manifests."""
        ident = {"name": self.name, "version": self.version, "seed": self.seed, "draws": self.draws,
                 "mask_selection": self.mask_selection, "preprocessing": self.preprocessing,
                 "settings": [s.to_dict() for s in self.settings]}
        if self.corruptions:
            ident["corruptions"] = list(self.corruptions)
        return ident


def level_text(value: float) -> str:
    """Canonical text of a numeric level: ``0.1`` → ``"0.1"``, ``3`` → ``"3"``."""
    return format(float(value), "g")


def make_setting(kind: str, params: dict, level: Optional[str], where: str, protocol: str = "") -> Setting:
    """Validate one setting; ``where`` names the card (or option) for the error message."""
    if kind not in PROMPT_KINDS:
        raise SambenchError(f"{where}: unknown prompt kind '{kind}' (known: {', '.join(PROMPT_KINDS)})")
    params = dict(params)
    value: Optional[float] = None
    frame = params.pop("box_frame", None)
    if frame is not None and kind not in BOX_KINDS:
        raise SambenchError(f"{where}: 'box_frame' only applies to box settings ({', '.join(BOX_KINDS)}), not '{kind}'")
    if frame is not None and frame not in BOX_FRAMES:
        raise SambenchError(f"{where}: box_frame must be one of {', '.join(BOX_FRAMES)}, got {frame!r}")
    if kind == "clicks":
        from sambench.inputs.clicks import parse_click_settings

        k = params.pop("clicks", None)
        clicks = parse_click_settings(params, where)
        if isinstance(k, bool) or not isinstance(k, int) or not clicks.first_level <= k <= clicks.max_clicks:
            raise SambenchError(f"{where}: impossible level {k!r} for 'clicks': levels are {clicks.first_level}..{clicks.max_clicks}")
        params = {"clicks": k, **clicks.to_dict()}
        return Setting(level=str(k) if level is None else str(level), kind=kind, params=tuple(sorted(params.items())),
                       level_value=float(k), protocol=protocol)
    if kind in BOX_NOISE_KINDS:
        s = params.get("scale")
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise SambenchError(f"{where}: kind '{kind}' needs a numeric noise 'scale', got {s!r}")
        if not 0.0 <= float(s) <= 1.0:
            raise SambenchError(f"{where}: impossible level {s!r} for '{kind}': the noise scale must be in [0, 1]")
        params["scale"] = float(s)
        value = float(s)
    elif kind == "points":
        k = params.get("k")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or int(k) != k or k < 1:
            raise SambenchError(f"{where}: impossible level {k!r} for 'points': the number of points must be an integer >= 1")
        params["k"] = int(k)
        value = float(k)
    n = params.get("negatives", 0)
    if kind == "points" and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise SambenchError(f"{where}: 'negatives' must be an integer >= 0, got {n!r}")
    if kind == "points":
        params["negatives"] = int(n)
    elif "negatives" in params:
        raise SambenchError(f"{where}: 'negatives' only applies to 'points' settings")
    if frame not in (None, "label"):  # the default stays out of the identity, so existing manifests are unchanged
        params["box_frame"] = frame
    if level is None:
        level = kind if value is None else level_text(value)
    return Setting(level=str(level), kind=kind, params=tuple(sorted(params.items())), level_value=value,
                   protocol=protocol)


def parse_protocol_card(data: dict, path: Path) -> ProtocolCard:
    _check_fields(data, PROTOCOL_FIELDS, path)
    name = _require(data, "name", str, path)
    version = _require(data, "version", int, path)
    draws = data.get("draws", 20)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise SambenchError(f"{path}: 'draws' must be an integer >= 1, got {draws!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SambenchError(f"{path}: 'seed' must be an integer >= 0, got {seed!r}")
    mask_selection = data.get("mask_selection", "single")
    if mask_selection not in MASK_SELECTIONS:
        raise SambenchError(f"{path}: mask_selection must be one of {', '.join(MASK_SELECTIONS)}, got {mask_selection!r}")
    preprocessing = data.get("preprocessing", "sam")
    if preprocessing not in PREPROCESSING_MODES:
        raise SambenchError(f"{path}: preprocessing must be one of {', '.join(PREPROCESSING_MODES)}, got {preprocessing!r}")

    settings: list[Setting] = []
    if "settings" in data:
        if "kind" in data or "levels" in data:
            raise SambenchError(f"{path}: give either 'settings' or 'kind' + 'levels', not both")
        raw_settings = _require(data, "settings", list, path)
        for i, s in enumerate(raw_settings):
            if not isinstance(s, dict):
                raise SambenchError(f"{path}: settings[{i}] must be a mapping")
            _check_fields(s, SETTING_FIELDS, path)
            if "kind" not in s:
                raise SambenchError(f"{path}: settings[{i}] is missing 'kind'")
            params = {k: v for k, v in s.items() if k not in ("level", "kind")}
            if "box_frame" in data and s["kind"] in BOX_KINDS:  # the card's frame, unless the setting gives its own
                params.setdefault("box_frame", data["box_frame"])
            settings.append(make_setting(s["kind"], params, s.get("level"), f"{path}: settings[{i}]", name))
    elif data.get("kind") == "clicks":
        if "box_frame" in data:
            raise SambenchError(f"{path}: 'box_frame' only applies to box settings, not to a 'clicks' protocol")
        if "levels" in data:
            raise SambenchError(f"{path}: a 'clicks' protocol has no 'levels': they are the clicks 1..max_clicks")
        from sambench.inputs.clicks import parse_click_settings

        clicks = parse_click_settings({k: data[k] for k in CLICK_CARD_FIELDS if k in data}, str(path))
        settings = [make_setting("clicks", {"clicks": k, **clicks.to_dict()}, None, str(path), name)
                    for k in clicks.levels]
    else:
        kind = _require(data, "kind", str, path)
        param = LEVEL_PARAM.get(kind, "")
        if kind not in PROMPT_KINDS:
            raise SambenchError(f"{path}: unknown prompt kind '{kind}' (known: {', '.join(PROMPT_KINDS)})")
        extra = {k: data[k] for k in ("negatives", "box_frame") if k in data}
        if param is None:
            settings.append(make_setting(kind, extra, None, str(path), name))
        else:
            levels = _require(data, "levels", list, path)
            if not levels:
                raise SambenchError(f"{path}: 'levels' is empty")
            for v in levels:
                settings.append(make_setting(kind, {param: v, **extra}, None, str(path), name))
    levels = [s.level for s in settings]
    if len(set(levels)) != len(levels):
        raise SambenchError(f"{path}: duplicate levels {levels}")
    kinds = {s.kind for s in settings}
    if "clicks" in kinds and len(kinds) > 1:
        raise SambenchError(f"{path}: a 'clicks' protocol cannot be mixed with other prompt kinds")
    if "clicks" not in kinds and any(f in data for f in CLICK_CARD_FIELDS):
        raise SambenchError(f"{path}: {', '.join(f for f in CLICK_CARD_FIELDS if f in data)} only apply to kind: clicks")
    corruptions = data.get("corruptions", [])
    if not isinstance(corruptions, list) or not all(isinstance(c, str) for c in corruptions):
        raise SambenchError(f"{path}: 'corruptions' must be a list like [all] or [fog:1,3, contrast]")
    from sambench.inputs.corruptions import parse_spec

    for c in corruptions:
        try:
            parse_spec(c)
        except SambenchError as exc:
            raise SambenchError(f"{path}: {exc}") from None
    return ProtocolCard(name=name, version=version, description=str(data.get("description", "")).strip(),
                        settings=tuple(settings), draws=draws, seed=seed, mask_selection=mask_selection,
                        preprocessing=preprocessing, path=path, raw=data, corruptions=tuple(corruptions))


def with_overrides(card: ProtocolCard, levels: Optional[list[str]] = None, draws: Optional[int] = None,
                   seed: Optional[int] = None) -> ProtocolCard:
    """A copy of ``card`` restricted/extended to ``levels`` and with other ``draws``/``seed``.

    For a single-kind protocol, ``levels`` are new values of its parameter (``--levels 0,0.5,1``); for a
    suite they select settings by level. Overrides never change the protocol version: a prompt's key
    already contains its level and draw, so prompts shared with the full card stay byte-identical.
    """
    settings = list(card.settings)
    where = f"protocol '{card.name}'"
    if levels and card.clicks is not None:
        raise SambenchError(f"{where} is a click sequence: its levels are the clicks 1..{card.clicks.max_clicks}, "
                            f"so --levels does not apply (copy the card and set max_clicks)")
    if levels:
        kinds = {s.kind for s in card.settings}
        by_level = {s.level: s for s in card.settings}
        new = []
        for lv in levels:
            lv = str(lv).strip()
            if lv in by_level:
                new.append(by_level[lv])
                continue
            if len(kinds) == 1 and LEVEL_PARAM.get(next(iter(kinds))):
                kind = next(iter(kinds))
                try:
                    num = float(lv)
                except ValueError:
                    raise SambenchError(f"{where}: level '{lv}' is not a number") from None
                base = dict(card.settings[0].params)
                base[LEVEL_PARAM[kind]] = int(num) if kind == "points" and num == int(num) else num
                new.append(make_setting(kind, base, None, where, card.name))
            else:
                raise SambenchError(f"{where} has no level '{lv}' (levels: {', '.join(by_level)})")
        given = [s.level for s in new]
        dup = sorted({x for x in given if given.count(x) > 1})
        if dup:
            raise SambenchError(f"{where}: level(s) {', '.join(dup)} given twice in --levels")
        settings = new
    if draws is not None and draws < 1:
        raise SambenchError(f"{where}: --draws must be >= 1, got {draws}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SambenchError(f"{where}: --seed must be an integer >= 0 (as a card's 'seed'), got {seed!r}")
    return ProtocolCard(name=card.name, version=card.version, description=card.description,
                        settings=tuple(settings), draws=draws or card.draws,
                        seed=card.seed if seed is None else seed, mask_selection=card.mask_selection,
                        preprocessing=card.preprocessing, path=card.path, raw=card.raw, corruptions=card.corruptions)


# ------------------------------------------------------------------------------------------- lookup


def _scan(section: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in card_dirs(section):
        for p in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            found.setdefault(p.stem, p)
    return found


def list_cards(section: str) -> dict[str, Path]:
    """Card name → file for ``models`` or ``protocols`` (file stems; a card's ``name`` must match)."""
    return _scan(section)


def _load(section: str, name: str):
    cards = _scan(section)
    if name not in cards:
        # A path to a card file works too.
        p = Path(name)
        if p.suffix in (".yaml", ".yml") and p.is_file():
            cards = {name: p}
        else:
            noun = "model" if section == "models" else "protocol"
            raise SambenchError(f"unknown {noun} '{name}'{did_you_mean(name, cards)} "
                                f"(known: {', '.join(sorted(cards)) or 'none'}; "
                                f"cards are read from {', '.join(str(d) for d in card_dirs(section))})")
    path = cards[name]
    data = read_yaml(path)
    card = parse_model_card(data, path) if section == "models" else parse_protocol_card(data, path)
    if path.stem != card.name and name == path.stem:
        raise SambenchError(f"{path}: card name '{card.name}' does not match its file name '{path.stem}'")
    return card


#: Family names → the documented default variant (docs/models.md "Family names"). ViT-L for the SAM-1
#: family because the Stable-SAM and HQ-SAM papers report ViT-L; Hiera-L for SAM 2.1. A card file with
#: the family's name (a user's ``./models/sam.yaml``) shadows the alias.
FAMILY_DEFAULTS = {
    "sam": "sam-vit-l",
    "hq-sam": "hq-sam-vit-l",
    "stable-sam": "stable-sam-vit-l",
    "sam2": "sam2.1-hiera-large",
    "stable-sam2": "stable-sam2.1-hiera-large",
}


def resolve_model_name(name: str) -> str:
    """The card name ``name`` stands for: a family name → its default variant; anything else unchanged."""
    if name in FAMILY_DEFAULTS and name not in _scan("models"):
        return FAMILY_DEFAULTS[name]
    return name


#: ``hf:<hub id or local directory>`` names a transformers checkpoint without a card (sambench/adapters/hf.py).
HF_PREFIX = "hf:"


def hf_card(name: str) -> ModelCard:
    """The implicit card of ``hf:<hub id or local dir>``: adapter ``hf``, option ``source``, no checkpoint."""
    source = name[len(HF_PREFIX):].strip()
    if not source:
        raise SambenchError(f"model '{name}': give a hub id or a local directory after 'hf:' (e.g. hf:facebook/sam-vit-base)")
    return ModelCard(name=name, adapter="hf", description=f"transformers checkpoint {source} (no card)",
                     options={"source": source}, checkpoint=None, path=None, raw={"name": name, "adapter": "hf"})


def load_model_card(name: str) -> ModelCard:
    """The model card ``name``: a card name, a family name (:data:`FAMILY_DEFAULTS`), ``hf:<hub id or
    local dir>`` (:func:`hf_card`), or a card file."""
    if name.startswith(HF_PREFIX):
        return hf_card(name)
    return _load("models", resolve_model_name(name))


def load_protocol_card(name: str) -> ProtocolCard:
    return _load("protocols", name)
