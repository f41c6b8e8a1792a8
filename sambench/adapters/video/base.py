"""The video adapter interface: open a video once, propagate any number of prompts through it.

Execution hands an adapter one video at a time as a :class:`FrameSource` (lazy frames) and calls

    session = adapter.open(frames)                        # once per (model, video, corruption)
    for t, mask, score in adapter.propagate(session, prompt_frame, prompt=...):   # any number of times
        ...
    adapter.close(session)

**Encode once.** A session computes each frame's image features at most once, however many prompts are
propagated against it (``encoder_calls`` counts frames encoded over the adapter's life; a second
propagation over the same frames adds 0). Features are kept on the CPU when they are large and moved to
the device when a frame is visited (offload), so a long video never holds every frame's features on the GPU.

**Each propagation is independent**: the memory of earlier propagations is reset; only frame features are
reused. Masks are bool (H, W) at the frame's original resolution.

Registry: a model card names its video adapter either in ``adapter:`` (a video-only card, ``video: true``)
or in ``video_adapter:`` (an image card that is also usable for video, e.g. ``sam2.1-hiera-tiny-random``);
:func:`build_video_adapter` resolves either, as :func:`sambench.adapters.build_adapter` does for images.
"""

from __future__ import annotations

import abc
import importlib
from typing import Any, Iterator, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from sambench.adapters.base import UnknownOptionsError
from sambench.config import ModelCard, load_model_card
from sambench.types import Prompt, SambenchError, did_you_mean

#: Prompt forms a video adapter may take on its prompt frame ("mask": a bool (H, W) mask, e.g. the GT).
VIDEO_CAPABILITIES = frozenset({"box", "points", "box+points", "mask"})

#: ``forward``: frames t >= prompt_frame, in order; ``both``: forward, then backward from the prompt frame.
DIRECTIONS = ("forward", "both")


@runtime_checkable
class FrameSource(Protocol):
    """Lazy frames of one video, as execution hands them to an adapter.

    ``frames[t]`` is frame ``t`` as RGB uint8 (H, W, 3), read (and corrupted) on demand; ``key`` identifies
    the frames (dataset, video, corruption, severity): two sources with equal keys hold equal frames.
    """

    key: tuple

    def __len__(self) -> int: ...

    def __getitem__(self, t: int) -> np.ndarray: ...


class ListFrames:
    """A :class:`FrameSource` over frames already in memory (tests, small examples)."""

    def __init__(self, frames: Sequence[np.ndarray], key: tuple = ("in-memory",)) -> None:
        self._frames = list(frames)
        self.key = tuple(key)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, t: int) -> np.ndarray:
        return self._frames[t]


class SessionBase:
    """What the model adapters' sessions share: the video's frames and whether :meth:`VideoAdapter.close`
    has released it (subclasses add the model's state)."""

    frames: FrameSource
    closed: bool


class VideoAdapter(abc.ABC):
    """Base class of every video adapter (module docstring).

    Subclasses set ``name`` and ``capabilities`` (subset of :data:`VIDEO_CAPABILITIES`) and implement
    :meth:`signature`, :meth:`open`, :meth:`propagate` and, if they hold resources, :meth:`close`.
    ``encoder_calls`` (frames encoded, over the adapter's life) and ``propagations`` are counted by the
    subclasses and recorded in the run manifest.
    """

    name: str = "video-adapter"
    capabilities: frozenset = VIDEO_CAPABILITIES
    #: The session class :meth:`open` returns, when it derives from :class:`SessionBase` (checked by
    #: :meth:`check_request` when given a session).
    session_type: type = SessionBase

    def __init__(self) -> None:
        self.encoder_calls = 0
        self.propagations = 0

    @abc.abstractmethod
    def signature(self) -> dict:
        """Identity for manifests and the store: ``model``, ``adapter``, ``adapter_version``,
        ``weights_sha256`` (or None) and the options that change outputs (as image adapters)."""

    @abc.abstractmethod
    def open(self, frames: FrameSource) -> Any:
        """A session for one video. Frames are encoded at most once per session (lazily on first visit or
        eagerly); large features are offloaded to the CPU."""

    @abc.abstractmethod
    def propagate(self, session: Any, prompt_frame: int, prompt: Optional[Prompt] = None,
                  mask: Optional[np.ndarray] = None, direction: str = "forward"
                  ) -> Iterator[tuple[int, np.ndarray, Optional[float]]]:
        """Prompt frame ``prompt_frame`` with exactly one of ``prompt`` / ``mask`` (bool (H, W)) and yield
        ``(t, bool (H, W) mask, score or None)`` for every frame propagated to, the prompt frame first.
        ``direction`` is one of :data:`DIRECTIONS`. Independent of earlier calls (state reset), but reuses
        the session's frame features."""

    def close(self, session: Any) -> None:
        """Release a session's features and state (default: nothing to release)."""

    def counters(self) -> dict:
        return {"encoder_calls": self.encoder_calls, "propagations": self.propagations}

    def bind_model_options(self, *, name: str, options: Any, device: Any, weights_id: str,
                           offload_state: Optional[bool]) -> None:
        """What the torch model adapters' ``__init__`` set alike: identity, ``options`` (fp32 only in video),
        ``mask_threshold``, the resolved device and ``offload_state`` (default: on when the device is not the CPU)."""
        from sambench.adapters.decoding import resolve_device  # torch: heavy, only the model adapters need it

        if options.dtype != "fp32":
            raise SambenchError(f"model '{name}': video runs in fp32 only (option dtype={options.dtype})")
        self.name, self.options, self.weights_id = name, options, weights_id
        self.mask_threshold = float(options.mask_threshold)
        self.device = resolve_device(device)
        self.offload_state = (self.device.type != "cpu") if offload_state is None else bool(offload_state)

    # ----------------------------------------------------------------------------- shared checks

    def check_request(self, frames: FrameSource, prompt_frame: int, prompt: Optional[Prompt],
                      mask: Optional[np.ndarray], direction: str) -> None:
        """One-line errors for a bad propagate() call (``frames``: the video, or a session of this adapter,
        which must be open): exactly one of prompt/mask, a form this model takes,
        a prompt frame inside the video, a known direction, a mask of the frame's size."""
        if isinstance(frames, SessionBase) or self.session_type is not SessionBase:
            if not isinstance(frames, self.session_type) or frames.closed:
                raise SambenchError(f"model '{self.name}': propagate() needs an open session from this adapter's open()")
            frames = frames.frames
        if (prompt is None) == (mask is None):
            raise SambenchError(f"model '{self.name}': propagate() needs exactly one of prompt and mask")
        form = "mask" if mask is not None else prompt.form
        if form not in self.capabilities:
            raise SambenchError(f"model '{self.name}' cannot take a '{form}' prompt "
                                f"(it takes: {', '.join(sorted(self.capabilities))})")
        if direction not in DIRECTIONS:
            raise SambenchError(f"model '{self.name}': unknown direction '{direction}' (known: {', '.join(DIRECTIONS)})")
        n = len(frames)
        if not 0 <= int(prompt_frame) < n:
            raise SambenchError(f"model '{self.name}': prompt frame {prompt_frame} outside the video (0..{n - 1})")
        if mask is not None:
            h, w = frames[int(prompt_frame)].shape[:2]
            if np.asarray(mask).shape != (h, w):
                raise SambenchError(f"model '{self.name}': mask prompt of shape {np.asarray(mask).shape}, "
                                    f"frame {prompt_frame} is {(h, w)}")


def frame_order(n: int, prompt_frame: int, direction: str) -> list[int]:
    """Frames a propagation yields, in order: the prompt frame first, then forward, then (``both``) backward."""
    order = list(range(prompt_frame, n))
    if direction == "both":
        order += list(range(prompt_frame - 1, -1, -1))
    return order


# ----------------------------------------------------------------------------------------- registry

#: Built-in video adapters: card ``adapter:`` / ``video_adapter:`` name → ``"module:function"`` (imported
#: lazily: torch loads only when a model is built). Factories are called as ``factory(card, **runtime)``
#: with ``device``, ``checkpoint``, ``plugin``, ``options``. vpipe's weight-free baselines register here too.
VIDEO_BUILTIN: dict[str, str] = {
    "sam2-video": "sambench.adapters.video.sam2_video:build_sam2_video",
    "stable-sam2-video": "sambench.adapters.video.sam2_video:build_stable_sam2_video",
    "hf-video": "sambench.adapters.video.hf_video:build_hf_video",
    "mask-hold": "sambench.adapters.video.baselines:build_mask_hold",
    "flow-warp": "sambench.adapters.video.baselines:build_flow_warp",
}


def _card(model: str | ModelCard) -> ModelCard:
    return model if isinstance(model, ModelCard) else load_model_card(model)


def video_adapter_name(card: ModelCard) -> Optional[str]:
    """The video adapter a card runs with: its ``video_adapter:`` field, else its ``adapter:`` when that is
    a video adapter, else None (an image-only model)."""
    if card.video_adapter:
        return card.video_adapter
    return card.adapter if (card.video or card.adapter in VIDEO_BUILTIN) else None


def is_video_model(model: str | ModelCard) -> bool:
    """True when the model can run a video protocol."""
    return video_adapter_name(_card(model)) is not None


def build_video_adapter(model: str | ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                        plugin: Optional[str] = None, options: Optional[dict[str, Any]] = None) -> VideoAdapter:
    """Build the video adapter a model card describes (``model`` is a card name, a card file or a card)."""
    card = _card(model)
    kind = video_adapter_name(card)
    if kind is None:
        raise SambenchError(f"model '{card.name}' is an image model: it has no video adapter "
                            f"(a video model's card sets 'video_adapter:' or a video 'adapter:')")
    if kind not in VIDEO_BUILTIN:
        raise SambenchError(f"{card.path or card.name}: unknown video adapter '{kind}'{did_you_mean(kind, VIDEO_BUILTIN)} "
                            f"(known: {', '.join(sorted(VIDEO_BUILTIN))})")
    module, _, attr = VIDEO_BUILTIN[kind].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    merged = {**card.options, **(options or {})}
    try:
        return factory(card, device=device, checkpoint=checkpoint, plugin=plugin, options=merged)
    except UnknownOptionsError as exc:
        given = [k for k in exc.keys if k in (options or {})]
        if not given:
            raise
        raise SambenchError(f"--option {given[0]}: unknown option '{given[0]}' for model '{card.name}'"
                            f"{did_you_mean(given[0], exc.known)} (its options: {', '.join(exc.known) or 'none'})") from None


__all__ = ["DIRECTIONS", "VIDEO_BUILTIN", "VIDEO_CAPABILITIES", "FrameSource", "ListFrames", "SessionBase", "VideoAdapter",
           "build_video_adapter", "frame_order", "is_video_model", "video_adapter_name"]
