"""Protocol cards (``protocols/*.yaml``) read into :class:`ProtocolCard`, its :class:`Setting` levels and overrides.

A protocol says which prompts a model is given: a list of settings (one prompt kind with its
parameters each, stored under its ``level``), how many keyed draws, the seed, the mask selection and
the preprocessing mode, and the corruptions it always runs under. The interactive protocol
(``kind: clicks``) is one setting per click count; :attr:`ProtocolCard.interactive` and
:attr:`Setting.interactive` are the one way to ask whether a protocol or a setting is interactive.
The words a card may use are :mod:`sambench.config.vocabulary`; cards are found and read by
:mod:`sambench.config.lookup`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from sambench.config.lookup import check_fields, list_cards, load_card, require
from sambench.config.vocabulary import (BOX_FRAMES, BOX_KINDS, BOX_NOISE_KINDS, CLICK_CARD_FIELDS, INTERACTIVE_KIND,
                                        LEVEL_PARAM, MASK_SELECTIONS, PREPROCESSING_MODES, PROMPT_FRAMES, PROMPT_KINDS,
                                        REPLAY_FORMATS, REPLAY_KIND, STARTS, VIDEO_ONLY_KINDS, parse_spec)
from sambench.types import SambenchError, check_choice, check_min

PROTOCOL_FIELDS = {"name", "version", "description", "kind", "levels", "settings", "draws", "seed",
                   "mask_selection", "preprocessing", "negatives", "reference", "corruptions", "box_frame",
                   "file", "format", "video", "prompt_frame", *CLICK_CARD_FIELDS}
#: Where a replay card's ``file: sambench:PATH`` is looked up: the installed sambench package (shipped data).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The prefix of a replay ``file`` inside the sambench package (``sambench:data/replay/...``).
PACKAGE_PREFIX = "sambench:"
SETTING_FIELDS = {"level", "kind", "scale", "k", "negatives", "box_frame"}


# ------------------------------------------------------------------------------------------- clicks


@dataclass(frozen=True)
class ClickSettings:
    """The interactive protocol's parameters (a ``kind: clicks`` card; docs/protocols.md).

    ``max_clicks``: the click limit (20); ``start``: one of :data:`~sambench.config.vocabulary.STARTS`;
    ``start_scale``: the noise scale of a ``noisy-box`` start (HQ-SAM's ``box_noise``); ``feed_logits``:
    give a model that takes mask prompts its previous low-res logits (SAM's interactive use).
    """

    max_clicks: int = 20
    start: str = "click"
    start_scale: float = 0.0
    feed_logits: bool = True

    @property
    def first_level(self) -> int:
        return 0 if self.start != "click" else 1

    @property
    def levels(self) -> list[int]:
        return list(range(self.first_level, self.max_clicks + 1))

    @property
    def deterministic(self) -> bool:
        """Only a noisy start box depends on the draw."""
        return self.start != "noisy-box"

    def to_dict(self) -> dict:
        return {"max_clicks": self.max_clicks, "start": self.start, "start_scale": self.start_scale,
                "feed_logits": self.feed_logits}


def parse_click_settings(data: dict, where: str) -> ClickSettings:
    """Validate the click fields of a card mapping; ``where`` names the card in the one-line error."""
    n = data.get("max_clicks", 20)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100:
        raise SambenchError(f"{where}: 'max_clicks' must be an integer in [1, 100], got {n!r}")
    start = data.get("start", "click")
    check_choice(start, STARTS, "'start'", where)
    scale = data.get("start_scale", 0.0 if start != "noisy-box" else None)
    if start == "noisy-box":
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0.0 <= float(scale) <= 1.0:
            raise SambenchError(f"{where}: a noisy-box start needs 'start_scale' in [0, 1], got {scale!r}")
    elif scale not in (0, 0.0):
        raise SambenchError(f"{where}: 'start_scale' only applies to start: noisy-box")
    feed = data.get("feed_logits", True)
    if not isinstance(feed, bool):
        raise SambenchError(f"{where}: 'feed_logits' must be true or false, got {feed!r}")
    return ClickSettings(max_clicks=n, start=start, start_scale=float(scale), feed_logits=feed)


# ------------------------------------------------------------------------------------------ setting


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
    def interactive(self) -> bool:
        """True for a step of the interactive protocol (kind ``clicks``): its prompt is the click sequence's
        step ``level``, run by the click path and scored by NoC; False for a batch prompt (box or points)."""
        return self.kind == INTERACTIVE_KIND

    @property
    def replayed(self) -> bool:
        """True for a level of the replay protocol: its prompts are read from a file (sambench/inputs/replay.py),
        draw d of an object being the object's d-th prompt of the level in file order."""
        return self.kind == REPLAY_KIND

    @property
    def deterministic(self) -> bool:
        """GT boxes (and zero-noise boxes, and click sequences not started from a noisy box) do not depend on
        the draw: one draw is enough."""
        if self.interactive:
            return dict(self.params).get("start") != "noisy-box"
        if self.replayed:  # the file's prompts of one object at this level are its draws
            return False
        return self.kind in ("gt-box", "gt-mask") or (self.kind in BOX_NOISE_KINDS and dict(self.params).get("scale") == 0)

    @property
    def is_gt_box(self) -> bool:
        """True for the tight GT box: level/kind ``gt-box`` or a box-noise level of value 0."""
        if self.level == "gt-box" or self.kind == "gt-box":
            return True
        return self.kind in BOX_NOISE_KINDS and self.level_value is not None and float(self.level_value) == 0.0

    @property
    def family(self) -> str:
        """``box``, ``points`` or ``clicks``: the x axis a degradation curve of this setting belongs to."""
        return self.kind if self.kind in ("points", INTERACTIVE_KIND) else "box"

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


def level_text(value: float) -> str:
    """Canonical text of a numeric level: ``0.1`` → ``"0.1"``, ``3`` → ``"3"``."""
    return format(float(value), "g")


def make_setting(kind: str, params: dict, level: Optional[str], where: str, protocol: str = "") -> Setting:
    """Validate one setting; ``where`` names the card (or option) for the error message."""
    if kind not in PROMPT_KINDS:
        raise SambenchError(f"{where}: unknown prompt kind '{kind}' (known: {', '.join(PROMPT_KINDS)})")
    params = dict(params)
    frame = params.pop("box_frame", None)
    if frame is not None and kind not in BOX_KINDS:
        raise SambenchError(f"{where}: 'box_frame' only applies to box settings ({', '.join(BOX_KINDS)}), not '{kind}'")
    if frame is not None:
        check_choice(frame, BOX_FRAMES, "box_frame", where)
    if kind == INTERACTIVE_KIND:
        return _click_setting(params, level, where, protocol)
    if kind == REPLAY_KIND:
        return _replay_setting(params, level, where, protocol)
    value = _level_value(kind, params, where)
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


def _click_setting(params: dict, level: Optional[str], where: str, protocol: str) -> Setting:
    """The setting of step ``params["clicks"]`` of a click sequence with the card's click fields."""
    k = params.pop("clicks", None)
    clicks = parse_click_settings(params, where)
    if isinstance(k, bool) or not isinstance(k, int) or not clicks.first_level <= k <= clicks.max_clicks:
        raise SambenchError(f"{where}: impossible level {k!r} for 'clicks': levels are {clicks.first_level}..{clicks.max_clicks}")
    params = {"clicks": k, **clicks.to_dict()}
    return Setting(level=str(k) if level is None else str(level), kind=INTERACTIVE_KIND,
                   params=tuple(sorted(params.items())), level_value=float(k), protocol=protocol)


def _replay_setting(params: dict, level: Optional[str], where: str, protocol: str) -> Setting:
    """A level of a replayed file: its label (the file's annotator group) and the file's sha256, so that a store
    holding another file's prompts under the same label refuses this one."""
    sha = params.get("file_sha256")
    if set(params) != {"file_sha256"} or not isinstance(sha, str) or len(sha) != 64:
        raise SambenchError(f"{where}: a replay level has exactly one parameter, the file's 'file_sha256'")
    if level is None or not str(level):
        raise SambenchError(f"{where}: a replay level needs its label (the file's group)")
    return Setting(level=str(level), kind=REPLAY_KIND, params=(("file_sha256", sha),), level_value=None,
                   protocol=protocol)


def _level_value(kind: str, params: dict, where: str) -> Optional[float]:
    """Validate (and normalise in ``params``) the level parameter of a box-noise or points setting."""
    if kind in BOX_NOISE_KINDS:
        s = params.get("scale")
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise SambenchError(f"{where}: kind '{kind}' needs a numeric noise 'scale', got {s!r}")
        if not 0.0 <= float(s) <= 1.0:
            raise SambenchError(f"{where}: impossible level {s!r} for '{kind}': the noise scale must be in [0, 1]")
        params["scale"] = float(s)
        return float(s)
    if kind == "points":
        k = params.get("k")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or int(k) != k or k < 1:
            raise SambenchError(f"{where}: impossible level {k!r} for 'points': the number of points must be an integer >= 1")
        params["k"] = int(k)
        return float(k)
    return None


# ------------------------------------------------------------------------------------------- card


@dataclass(frozen=True)
class ProtocolCard:
    """One protocol: its settings (levels), draws, seed, mask selection, preprocessing and corruptions."""

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
    #: ``--corruption`` specs (sambench/config/vocabulary.py) this protocol always runs under, besides clean.
    corruptions: tuple = ()
    #: A video protocol (card field ``video: true``): its prompt is given on one frame of each object track
    #: and propagated (sambench/execution/video.py); scored by J and F, not by image IoU.
    video: bool = False
    #: Which frame of a track a video protocol prompts: one of :data:`~sambench.config.vocabulary.PROMPT_FRAMES`.
    prompt_frame: str = "first"
    #: A replay card's file: ``{"file": path, "format": name}``, plus ``sha256`` and ``prompts`` once the file is
    #: read (:func:`sambench.inputs.replay.resolve`); None for every other card.
    replay: Optional[dict] = field(default=None, hash=False)

    @property
    def replayed(self) -> bool:
        """True for the replay protocol (``kind: replay``): its levels and prompts come from a file."""
        return self.replay is not None

    @property
    def interactive(self) -> bool:
        """True for the interactive protocol (``kind: clicks``): its settings are the steps of one click
        sequence, so it runs on the click path and is reported by NoC; False for a batch protocol. A card
        cannot mix the two (:func:`parse_protocol_card`)."""
        return bool(self.settings) and self.settings[0].interactive

    def setting(self, level: str) -> Setting:
        for s in self.settings:
            if s.level == level:
                return s
        raise SambenchError(f"protocol '{self.name}' has no level '{level}' (levels: {', '.join(s.level for s in self.settings)})")

    def draws_for(self, setting: Setting) -> int:
        return 1 if setting.deterministic else self.draws

    @property
    def clicks(self) -> Optional[ClickSettings]:
        """The :class:`ClickSettings` of an :attr:`interactive` card, else None."""
        if not self.interactive:
            return None
        p = dict(self.settings[0].params)
        return ClickSettings(**{k: p[k] for k in CLICK_CARD_FIELDS})

    def identity(self) -> dict:
        """Everything that determines the prompts and decoding: recorded in manifests."""
        ident = {"name": self.name, "version": self.version, "seed": self.seed, "draws": self.draws,
                 "mask_selection": self.mask_selection, "preprocessing": self.preprocessing,
                 "settings": [s.to_dict() for s in self.settings]}
        if self.corruptions:
            ident["corruptions"] = list(self.corruptions)
        if self.video:  # image protocols keep their identity (and so their stored manifests) unchanged
            ident["video"], ident["prompt_frame"] = True, self.prompt_frame
        if self.replay is not None:
            ident["replay"] = dict(self.replay)
            ident["file_sha256"] = self.replay.get("sha256")
        return ident


def parse_protocol_card(data: dict, path: Path) -> ProtocolCard:
    """Validate the mapping of a protocol card file into a :class:`ProtocolCard` (one error line per problem)."""
    check_fields(data, PROTOCOL_FIELDS, path)
    name = require(data, "name", str, path)
    version = require(data, "version", int, path)
    draws = data.get("draws", 20)
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise SambenchError(f"{path}: 'draws' must be an integer >= 1, got {draws!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SambenchError(f"{path}: 'seed' must be an integer >= 0, got {seed!r}")
    mask_selection = data.get("mask_selection", "single")
    check_choice(mask_selection, MASK_SELECTIONS, "mask_selection", str(path))
    preprocessing = data.get("preprocessing", "sam")
    check_choice(preprocessing, PREPROCESSING_MODES, "preprocessing", str(path))
    if data.get("kind") == REPLAY_KIND or "file" in data or "format" in data:
        return _replay_card(data, path, name, version, seed, mask_selection, preprocessing)
    settings = _card_settings(data, path, name)
    levels = [s.level for s in settings]
    if len(set(levels)) != len(levels):
        raise SambenchError(f"{path}: duplicate levels {levels}")
    kinds = {s.kind for s in settings}
    if INTERACTIVE_KIND in kinds and len(kinds) > 1:
        raise SambenchError(f"{path}: a 'clicks' protocol cannot be mixed with other prompt kinds")
    if INTERACTIVE_KIND not in kinds and any(f in data for f in CLICK_CARD_FIELDS):
        raise SambenchError(f"{path}: {', '.join(f for f in CLICK_CARD_FIELDS if f in data)} only apply to kind: clicks")
    corruptions = data.get("corruptions", [])
    if not isinstance(corruptions, list) or not all(isinstance(c, str) for c in corruptions):
        raise SambenchError(f"{path}: 'corruptions' must be a list like [all] or [fog:1,3, contrast]")
    for c in corruptions:
        try:
            parse_spec(c)
        except SambenchError as exc:
            raise SambenchError(f"{path}: {exc}") from None
    video = data.get("video", False)
    if not isinstance(video, bool):
        raise SambenchError(f"{path}: 'video' must be true or false, got {video!r}")
    prompt_frame = data.get("prompt_frame", "first")
    if "prompt_frame" in data and not video:
        raise SambenchError(f"{path}: 'prompt_frame' only applies to a video protocol (video: true)")
    check_choice(prompt_frame, PROMPT_FRAMES, "prompt_frame", str(path))
    only = sorted({s.kind for s in settings} & set(VIDEO_ONLY_KINDS))
    if only and not video:
        raise SambenchError(f"{path}: prompt kind '{only[0]}' only applies to a video protocol (video: true)")
    return ProtocolCard(name=name, version=version, description=str(data.get("description", "")).strip(),
                        settings=tuple(settings), draws=draws, seed=seed, mask_selection=mask_selection,
                        preprocessing=preprocessing, path=path, raw=data, corruptions=tuple(corruptions),
                        video=video, prompt_frame=prompt_frame)


def _replay_card(data: dict, path: Path, name: str, version: int, seed: int, mask_selection: str,
                 preprocessing: str) -> ProtocolCard:
    """A ``kind: replay`` card: its ``file`` (and ``format``); levels and draws come from the file when it is read
    (:func:`sambench.inputs.replay.resolve`). ``draws``, if given, keeps the first ``draws`` prompts per object."""
    if data.get("kind") != REPLAY_KIND:
        raise SambenchError(f"{path}: 'file' and 'format' only apply to kind: replay")
    bad = sorted(set(data) & {"levels", "settings", "negatives", "box_frame", "corruptions", *CLICK_CARD_FIELDS})
    if bad:
        raise SambenchError(f"{path}: {', '.join(bad)} do not apply to kind: replay (levels and prompts come from its file)")
    file = require(data, "file", str, path)
    fmt = data.get("format", "auto")
    check_choice(fmt, REPLAY_FORMATS, "format", str(path))
    draws = data.get("draws")  # None: every prompt of the file (0 until the file is read)
    if draws is not None and (isinstance(draws, bool) or not isinstance(draws, int) or draws < 1):
        raise SambenchError(f"{path}: 'draws' must be an integer >= 1 (the first prompts per object kept), got {draws!r}")
    return ProtocolCard(name=name, version=version, description=str(data.get("description", "")).strip(),
                        settings=(), draws=draws or 0, seed=seed, mask_selection=mask_selection,
                        preprocessing=preprocessing, path=path, raw=data,
                        replay={"file": str(replay_path(file, path)), "format": fmt})


def replay_path(file: str, card: Optional[Path]) -> Path:
    """Where a replay ``file`` is: ``sambench:PATH`` inside the sambench package (shipped examples), an absolute
    path, or a path relative to the card's directory (to the working directory for ``-p NAME:FILE``)."""
    if file.startswith(PACKAGE_PREFIX):
        return PACKAGE_DIR / file[len(PACKAGE_PREFIX):]
    p = Path(file).expanduser()
    if p.is_absolute():
        return p
    return (Path.cwd() if card is None else Path(card).parent) / p


def _card_settings(data: dict, path: Path, name: str) -> list[Setting]:
    """The settings a card gives: a ``settings`` list, a ``kind: clicks`` sequence, or ``kind`` + ``levels``."""
    if "settings" in data:
        if "kind" in data or "levels" in data:
            raise SambenchError(f"{path}: give either 'settings' or 'kind' + 'levels', not both")
        settings = []
        for i, s in enumerate(require(data, "settings", list, path)):
            if not isinstance(s, dict):
                raise SambenchError(f"{path}: settings[{i}] must be a mapping")
            check_fields(s, SETTING_FIELDS, path)
            if "kind" not in s:
                raise SambenchError(f"{path}: settings[{i}] is missing 'kind'")
            params = {k: v for k, v in s.items() if k not in ("level", "kind")}
            if "box_frame" in data and s["kind"] in BOX_KINDS:  # the card's frame, unless the setting gives its own
                params.setdefault("box_frame", data["box_frame"])
            settings.append(make_setting(s["kind"], params, s.get("level"), f"{path}: settings[{i}]", name))
        return settings
    if data.get("kind") == INTERACTIVE_KIND:
        if "box_frame" in data:
            raise SambenchError(f"{path}: 'box_frame' only applies to box settings, not to a 'clicks' protocol")
        if "levels" in data:
            raise SambenchError(f"{path}: a 'clicks' protocol has no 'levels': they are the clicks 1..max_clicks")
        clicks = parse_click_settings({k: data[k] for k in CLICK_CARD_FIELDS if k in data}, str(path))
        return [make_setting(INTERACTIVE_KIND, {"clicks": k, **clicks.to_dict()}, None, str(path), name)
                for k in clicks.levels]
    kind = require(data, "kind", str, path)
    param = LEVEL_PARAM.get(kind, "")
    if kind not in PROMPT_KINDS:
        raise SambenchError(f"{path}: unknown prompt kind '{kind}' (known: {', '.join(PROMPT_KINDS)})")
    extra = {k: data[k] for k in ("negatives", "box_frame") if k in data}
    if param is None:
        return [make_setting(kind, extra, None, str(path), name)]
    levels = require(data, "levels", list, path)
    if not levels:
        raise SambenchError(f"{path}: 'levels' is empty")
    return [make_setting(kind, {param: v, **extra}, None, str(path), name) for v in levels]


def with_overrides(card: ProtocolCard, levels: Optional[list[str]] = None, draws: Optional[int] = None,
                   seed: Optional[int] = None) -> ProtocolCard:
    """A copy of ``card`` restricted/extended to ``levels`` and with other ``draws``/``seed``.

    For a single-kind protocol, ``levels`` are new values of its parameter (``--levels 0,0.5,1``); for a
    suite they select settings by level. Overrides never change the protocol version: a prompt's key
    already contains its level and draw, so prompts shared with the full card stay byte-identical.
    """
    settings = list(card.settings)
    where = f"protocol '{card.name}'"
    if levels and card.interactive:
        raise SambenchError(f"{where} is a click sequence: its levels are the clicks 1..{card.clicks.max_clicks}, "
                            f"so --levels does not apply (copy the card and set max_clicks)")
    if card.replayed and not card.settings:
        raise SambenchError(f"{where}: read its file first (sambench.inputs.replay.resolve): its levels come from it")
    if levels:
        settings = _override_levels(card, levels, where)
    if draws is not None:
        check_min(draws, 1, "--draws", where)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SambenchError(f"{where}: --seed must be an integer >= 0 (as a card's 'seed'), got {seed!r}")
    return ProtocolCard(name=card.name, version=card.version, description=card.description,
                        settings=tuple(settings), draws=draws or card.draws,
                        seed=card.seed if seed is None else seed, mask_selection=card.mask_selection,
                        preprocessing=card.preprocessing, path=card.path, raw=card.raw, corruptions=card.corruptions,
                        replay=card.replay, video=card.video, prompt_frame=card.prompt_frame)


def _override_levels(card: ProtocolCard, levels: list[str], where: str) -> list[Setting]:
    """The settings ``--levels`` asks for: existing levels by name, or new values of a single kind's parameter."""
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
    return new


def load_protocol_card(name: str) -> ProtocolCard:
    """The protocol card ``name``: a card name or a card file, or ``NAME:FILE`` — the replay card ``NAME``
    replaying ``FILE`` (a path relative to the working directory) instead of its own ``file``."""
    base, sep, file = name.partition(":")
    if sep and base in list_cards("protocols"):
        card = load_card("protocols", base, parse_protocol_card)
        if not card.replayed:
            raise SambenchError(f"protocol '{name}': only a replay card (kind: replay) takes a file after ':', "
                                f"and '{base}' is kind {card.settings[0].kind if card.settings else '?'}")
        if not file:
            raise SambenchError(f"protocol '{name}': give the file to replay after ':', e.g. {base}:prompts.json")
        return replace(card, replay={**card.replay, "file": str(replay_path(file, None))})
    return load_card("protocols", name, parse_protocol_card)
