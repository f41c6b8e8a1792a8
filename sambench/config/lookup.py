"""Where cards are found and how their YAML is read: the card directories, ``list_cards`` and ``load_card``.

Cards are looked up, in order, in every directory of ``$SAMBENCH_CARDS`` (``os.pathsep``-separated;
each may hold ``models/`` and ``protocols/`` subdirectories or be one itself), in ``./models`` and
``./protocols`` of the working directory, and in the cards shipped with sambench (the repository's
``models/`` and ``protocols/``; a non-editable install copies them to ``<prefix>/share/sambench/``). The
first card with a given name wins, so a user can shadow a shipped card by copying it.

YAML is read with ``yaml.safe_load``; every problem is raised as :class:`SambenchError` with one line
naming the file and what is wrong. The parsed YAML is cached by the file's path and bytes, so a card
read again (a report or a leaderboard loads the same cards many times) is not parsed again, and an
edited card is never served stale. The directories are listed afresh on every lookup (cheap), so a card
added or removed is seen at once.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from sambench.types import SambenchError, did_you_mean, first_line

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The two kinds of card, each a directory name.
SECTIONS = ("models", "protocols")

Card = TypeVar("Card")

#: (path, file bytes) → the mapping ``yaml.safe_load`` made of them (see the module docstring).
_parsed: dict[tuple[str, bytes], dict] = {}
_PARSED_MAX = 512


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
    """The mapping a card file holds (``yaml.safe_load``), or one :class:`SambenchError` line saying why not."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SambenchError(f"{path}: cannot read card: {exc.strerror}") from None
    key = (str(path), raw)
    if key not in _parsed:
        if len(_parsed) >= _PARSED_MAX:
            _parsed.clear()
        _parsed[key] = _parse_yaml(path, raw)
    return copy.deepcopy(_parsed[key])  # callers keep the mapping (a card's ``raw``): never share it


def _parse_yaml(path: Path, raw: bytes) -> dict:
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise SambenchError(f"{path}: malformed YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise SambenchError(f"{path}: a card must be a YAML mapping, got {type(data).__name__}")
    return data


def require(data: dict, key: str, typ: Any, path: Path) -> Any:
    """``data[key]``, which must be present and of type ``typ`` (a type or a tuple of types)."""
    if key not in data:
        raise SambenchError(f"{path}: missing required field '{key}'")
    value = data[key]
    if not isinstance(value, typ):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise SambenchError(f"{path}: field '{key}' must be {name}, got {type(value).__name__}")
    return value


def check_fields(data: dict, allowed: set, path: Path) -> None:
    """Refuse any field of ``data`` outside ``allowed``, naming the allowed ones."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SambenchError(f"{path}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def list_cards(section: str) -> dict[str, Path]:
    """Card name → file for ``models`` or ``protocols`` (file stems; a card's ``name`` must match)."""
    found: dict[str, Path] = {}
    for d in card_dirs(section):
        for p in sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")):
            found.setdefault(p.stem, p)
    return found


def card_file(section: str, name: str) -> Path:
    """The file of card ``name`` in ``section`` (a card name, or a path to a card file)."""
    cards = list_cards(section)
    if name in cards:
        return cards[name]
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    noun = "model" if section == "models" else "protocol"
    raise SambenchError(f"unknown {noun} '{name}'{did_you_mean(name, cards)} "
                        f"(known: {', '.join(sorted(cards)) or 'none'}; "
                        f"cards are read from {', '.join(str(d) for d in card_dirs(section))})")


def load_card(section: str, name: str, parse: Callable[[dict, Path], Card]) -> Card:
    """Card ``name`` of ``section``, read and validated by ``parse(data, path)``; a card found by its file
    name must carry that name."""
    path = card_file(section, name)
    card = parse(read_yaml(path), path)
    card_name = getattr(card, "name")
    if path.stem != card_name and name == path.stem:
        raise SambenchError(f"{path}: card name '{card_name}' does not match its file name '{path.stem}'")
    return card
