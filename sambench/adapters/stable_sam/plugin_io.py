"""The Stable-SAM plug-in file and the identity of the base model it was trained on.

A plug-in file (``torch.save`` of a plain dict, read back with ``torch.load(weights_only=True)``) holds
ONLY the plug-in, never base weights::

    {"format": "sambench-stable-sam-plugin", "format_version": 1,
     "plugin_config": {...PluginConfig...}, "plugin_state": {name: tensor},
     "base": {"card", "variant", "hq", "weights_id", "weights_sha256", "init_seed"},
     "train_config": {...}, "steps": int}

``base.weights_id`` is the sha256 of the base checkpoint file, or ``random-init:<seed>`` for a randomly
initialised base (as :func:`sambench.adapters.sam.adapter.load_sam_model` reports it). A plug-in is accepted
by a base with the same variant, HQ-or-not and weights id; the card name is informational (a renamed
copy of a card with the same weights is fine).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from sambench.adapters.stable_sam.modules import PluginConfig, StableSamPlugin
from sambench.adapters.weights import torch_load_problem
from sambench.types import SambenchError, first_line

PLUGIN_FORMAT = "sambench-stable-sam-plugin"
PLUGIN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class BaseSignature:
    """Which base model a plug-in belongs to (see module docstring)."""

    card: str
    variant: str
    hq: bool
    weights_id: str

    @property
    def weights_sha256(self) -> Optional[str]:
        return None if self.weights_id.startswith("random-init:") else self.weights_id

    @property
    def init_seed(self) -> Optional[int]:
        if self.weights_id.startswith("random-init:"):
            return int(self.weights_id.split(":", 1)[1])
        return None

    def to_dict(self) -> dict:
        return {"card": self.card, "variant": self.variant, "hq": self.hq, "weights_id": self.weights_id,
                "weights_sha256": self.weights_sha256, "init_seed": self.init_seed}

    @classmethod
    def from_dict(cls, d: dict) -> "BaseSignature":
        return cls(card=str(d["card"]), variant=str(d["variant"]), hq=bool(d["hq"]), weights_id=str(d["weights_id"]))

    def describe(self) -> str:
        family = "HQ-SAM" if self.hq else "SAM"
        w = f"weights sha256 {self.weights_id[:12]}…" if self.weights_sha256 else f"random init seed {self.init_seed}"
        return f"{self.card} ({family} {self.variant}, {w})"

    def same_model(self, other: "BaseSignature") -> bool:
        return (self.variant, self.hq, self.weights_id) == (other.variant, other.hq, other.weights_id)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` into a temporary file next to ``path``, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_plugin_file(path: os.PathLike | str, plugin: StableSamPlugin, base: BaseSignature,
                     train_config: Optional[dict] = None, steps: int = 0) -> Path:
    """Write the plug-in file (plug-in weights on CPU + base signature + configs) atomically."""
    p = Path(path)
    payload = {
        "format": PLUGIN_FORMAT,
        "format_version": PLUGIN_FORMAT_VERSION,
        "plugin_config": plugin.cfg.to_dict(),
        "plugin_state": {k: v.detach().to("cpu", torch.float32).clone() for k, v in plugin.state_dict().items()},
        "base": base.to_dict(),
        "train_config": dict(train_config or {}),
        "steps": int(steps),
    }
    atomic_torch_save(payload, p)
    return p


@dataclass
class LoadedPlugin:
    """A plug-in read from a file, with its metadata and the file's sha256."""

    plugin: StableSamPlugin
    base: BaseSignature
    train_config: dict
    steps: int
    sha256: str
    path: Path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_plugin_file(path: os.PathLike | str) -> LoadedPlugin:
    """Read and validate a plug-in file; every problem is one :class:`SambenchError` line naming it."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise SambenchError(f"{p}: is a directory, not a plug-in file")
    if not p.is_file():
        raise SambenchError(f"{p}: plug-in file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        kind, detail = torch_load_problem(exc)  # never relays torch's "retry with weights_only=False"
        if kind == "code":
            raise SambenchError(f"{p}: refused: not a Stable-SAM plug-in file, it pickles Python objects (it references "
                                f"{detail}); sambench never unpickles code") from None
        raise SambenchError(f"{p}: not a Stable-SAM plug-in file (torch.load failed: {detail})") from None
    if not isinstance(obj, dict) or obj.get("format") != PLUGIN_FORMAT:
        raise SambenchError(f"{p}: not a Stable-SAM plug-in file (no '{PLUGIN_FORMAT}' header; "
                            f"train one with `sambench train stable-sam`)")
    if obj.get("format_version") != PLUGIN_FORMAT_VERSION:
        raise SambenchError(f"{p}: plug-in format version {obj.get('format_version')!r} is not supported "
                            f"(this sambench reads version {PLUGIN_FORMAT_VERSION})")
    try:
        cfg = PluginConfig(**obj["plugin_config"])
        base = BaseSignature.from_dict(obj["base"])
        plugin = StableSamPlugin(cfg)
        plugin.load_state_dict(obj["plugin_state"], strict=True)
    except SambenchError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        first = first_line(exc)
        raise SambenchError(f"{p}: malformed Stable-SAM plug-in file ({first})") from None
    return LoadedPlugin(plugin=plugin.eval(), base=base, train_config=dict(obj.get("train_config") or {}),
                        steps=int(obj.get("steps", 0)), sha256=_sha256(p), path=p)


def check_base(loaded: LoadedPlugin, base: BaseSignature) -> None:
    """Refuse (one line) a plug-in trained on another base model than ``base``."""
    if not loaded.base.same_model(base):
        raise SambenchError(f"{loaded.path}: plug-in was trained on {loaded.base.describe()}, "
                            f"not on the base in use {base.describe()}")
