"""Model cards (``models/*.yaml``) read into :class:`ModelCard`: the checkpoint spec, family names and ``hf:``.

A model card names the adapter that runs it, the adapter's options, the official checkpoint (file,
address, size, hashes: :class:`CheckpointSpec`, checked by :mod:`sambench.adapters.weights`) and free
text (description, tags, paper). A model is named by its card, by a family name that stands for a
documented default variant (:data:`FAMILY_DEFAULTS`), by ``hf:<hub id or directory>`` (a transformers
checkpoint without a card, :func:`hf_card`), or by a path to a card file. Cards are found and read by
:mod:`sambench.config.lookup`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sambench.config.lookup import check_fields, list_cards, load_card, require
from sambench.types import SambenchError


@dataclass(frozen=True)
class CheckpointSpec:
    """The official weights a model card names: file name, download address, size and hash."""

    file: str
    url: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    #: Hex prefix that the official file name carries (``sam_vit_b_01ec64.pth`` → ``01ec64``: Meta's names
    #: carry the start of the file's MD5), or any longer prefix up to a full digest; checked against the
    #: MD5 and the SHA-256 of the file's bytes (either may match; see sambench/adapters/weights.py).
    hash_prefix: Optional[str] = None


@dataclass(frozen=True)
class ModelCard:
    """One model: its ``adapter`` (a registry name), the adapter's ``options`` and its checkpoint, if any."""

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
    #: True for a video-only model (``adapter:`` names a video adapter, e.g. ``mask-hold``); docs/video.md.
    video: bool = False
    #: The video adapter an image card also runs with in video protocols (``sam2-video``, ``hf-video``,
    #: ``stable-sam2-video``), or None; sambench/adapters/video/base.py resolves it.
    video_adapter: Optional[str] = None


#: ``base`` is read by the stable-sam adapter (the card its plug-in sits on, sambench/adapters/stable_sam/base.py).
#: ``tags`` are free words shown by ``sambench list models``; ``paper`` is shown by ``sambench leaderboard``.
#: ``video`` / ``video_adapter``: docs/video.md "Models".
MODEL_FIELDS = {"name", "adapter", "description", "options", "checkpoint", "base", "tags", "paper", "video",
                "video_adapter"}


def parse_model_card(data: dict, path: Path) -> ModelCard:
    """Validate the mapping of a model card file into a :class:`ModelCard` (one error line per problem)."""
    check_fields(data, MODEL_FIELDS, path)
    name = require(data, "name", str, path)
    adapter = require(data, "adapter", str, path)
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise SambenchError(f"{path}: field 'options' must be a mapping")
    ckpt = None
    if data.get("checkpoint") is not None:
        c = data["checkpoint"]
        if not isinstance(c, dict) or "file" not in c:
            raise SambenchError(f"{path}: field 'checkpoint' must be a mapping with at least 'file'")
        check_fields(c, {"file", "url", "size", "sha256", "hash_prefix"}, path)
        ckpt = CheckpointSpec(**c)
    tags = data.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SambenchError(f"{path}: field 'tags' must be a list of words")
    paper = data.get("paper")
    if paper is not None and not isinstance(paper, str):
        raise SambenchError(f"{path}: field 'paper' must be a string (citation and/or URL)")
    video = data.get("video", False)
    if not isinstance(video, bool):
        raise SambenchError(f"{path}: field 'video' must be true or false, got {video!r}")
    video_adapter = data.get("video_adapter")
    if video_adapter is not None and (not isinstance(video_adapter, str) or not video_adapter.strip()):
        raise SambenchError(f"{path}: field 'video_adapter' must be a video adapter name (e.g. sam2-video)")
    return ModelCard(name=name, adapter=adapter, description=str(data.get("description", "")).strip(),
                     options=dict(options), checkpoint=ckpt, path=path, raw=data, tags=tuple(tags), paper=paper,
                     video=video, video_adapter=video_adapter)


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
    if name in FAMILY_DEFAULTS and name not in list_cards("models"):
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
    return load_card("models", resolve_model_name(name), parse_model_card)
