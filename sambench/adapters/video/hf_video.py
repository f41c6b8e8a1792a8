"""The transformers video models: SAM 2.1, SAM 3's tracker and EdgeTAM with their inference sessions.

| checkpoint ``model_type`` | transformers class | processor |
|---|---|---|
| ``sam2_video`` | ``Sam2VideoModel`` | ``Sam2VideoProcessor`` |
| ``sam3_video``, ``sam3_tracker_video`` | ``Sam3TrackerVideoModel`` | ``Sam3TrackerVideoProcessor`` |
| ``edgetam_video`` | ``EdgeTamVideoModel`` | ``Sam2VideoProcessor`` |

Cards ``hf-sam2.1-*``, ``hf-sam3-tracker`` and ``hf-edgetam`` name ``video_adapter: hf-video``; the class
is picked by the checkpoint's ``model_type`` and must agree with the card's image ``adapter``. Weights come
from ``from_pretrained(source, local_files_only=True)`` as for images (sambench/adapters/hf.py): sambench
never downloads from the hub.

The calls are the library's documented session path: ``processor.init_video_session``,
``processor.add_inputs_to_inference_session`` (object id 1; ``input_points`` / ``input_labels`` /
``input_boxes`` in pixels, or ``input_masks``), ``model.propagate_in_video_iterator(session,
start_frame_idx=t0)`` (and ``reverse=True`` for ``direction="both"``), ``processor.post_process_masks(...,
binarize=False)`` ``> mask_threshold``; the score is the sigmoid of the object-score logit. Between
propagations the session's ``reset_tracking_data()`` drops prompts and memories but keeps the feature cache.

**Encode once.** The session's vision-feature cache holds one frame by default
(``max_vision_features_cache_size=1``); a session here is opened with a cache as large as the video, on the
CPU when the model runs elsewhere (``inference_state_device``: the library moves cached features to the
inference device on use), so every frame is encoded once per session. ``encoder_calls`` counts the
frames the vision encoder actually ran on (a forward hook on ``model.vision_encoder``).

**Frames are lazy.** The session's ``processed_frames`` (a dict of preprocessed frames in the library) is
replaced by a mapping that runs the video processor on frame ``t`` when the model asks for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch

from sambench.adapters.base import package_version
from sambench.adapters.hf import HfOptions, parse_hf_options, read_hf_config, weights_identity
from sambench.adapters.video.base import FrameSource, SessionBase, VideoAdapter
from sambench.config import ModelCard
from sambench.types import Prompt, SambenchError, first_line

ADAPTER_VERSION = "1"

#: checkpoint model_type → (transformers model class, processor class).
VIDEO_FAMILIES = {
    "sam2_video": ("Sam2VideoModel", "Sam2VideoProcessor"),
    "sam3_video": ("Sam3TrackerVideoModel", "Sam3TrackerVideoProcessor"),
    "sam3_tracker_video": ("Sam3TrackerVideoModel", "Sam3TrackerVideoProcessor"),
    "edgetam_video": ("EdgeTamVideoModel", "Sam2VideoProcessor"),
}

#: A card's image adapter → the video checkpoint types it may hold (``hf``: any).
IMAGE_KIND_TO_VIDEO = {
    "hf-sam2": ("sam2_video",),
    "hf-sam3-tracker": ("sam3_video", "sam3_tracker_video"),
    "hf-edgetam": ("edgetam_video",),
}

#: Object id given to the session (one object per propagation).
OBJ_ID = 1


class LazyProcessedFrames:
    """Stands for the session's ``processed_frames`` dict: frame ``t`` through the video processor on access."""

    def __init__(self, frames: FrameSource, video_processor: Any, dtype: torch.dtype = torch.float32) -> None:
        self.frames = frames
        self.video_processor = video_processor
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.frames)

    def __contains__(self, t: object) -> bool:
        return isinstance(t, int) and 0 <= t < len(self.frames)

    def __getitem__(self, t: int) -> torch.Tensor:
        out = self.video_processor(videos=[np.ascontiguousarray(self.frames[int(t)])[None]], return_tensors="pt")
        return out.pixel_values_videos[0][0].to(self.dtype)


@dataclass
class HfVideoSession(SessionBase):
    frames: FrameSource
    session: Any
    closed: bool = False


def load_hf_video(source: str, *, kind: str, model: str, revision: Optional[str] = None):
    """``(model_type, model, processor, weights_id)`` for a video checkpoint in a directory or the hub cache."""
    import transformers  # lazy: an optional extra that takes seconds to import; only an hf model needs it

    where, config = read_hf_config(source, model=model, revision=revision)
    mtype = config.model_type
    if mtype not in VIDEO_FAMILIES:
        raise SambenchError(f"{where}: model_type '{mtype}' is not a transformers video model "
                            f"(known: {', '.join(sorted(VIDEO_FAMILIES))})")
    allowed = IMAGE_KIND_TO_VIDEO.get(kind)
    if allowed is not None and mtype not in allowed:
        raise SambenchError(f"{where}: holds a '{mtype}' model, but model '{model}' is adapter '{kind}' "
                            f"(expects {', '.join(allowed)})")
    model_name, proc_name = VIDEO_FAMILIES[mtype]
    try:
        net = getattr(transformers, model_name).from_pretrained(where, local_files_only=True, revision=revision)
        processor = getattr(transformers, proc_name).from_pretrained(where, local_files_only=True, revision=revision)
    except (OSError, ValueError) as exc:
        raise SambenchError(f"{where}: cannot load {model_name}/{proc_name} ({first_line(exc)})") from None
    return mtype, net.eval(), processor, weights_identity(where, revision)


class HfVideoAdapter(VideoAdapter):
    """A transformers video model through its inference session, every frame encoded once (module docstring)."""

    kind = "hf-video"
    session_type = HfVideoSession

    def __init__(self, model: torch.nn.Module, processor: Any, *, name: str, options: HfOptions,
                 device: str | torch.device = "auto", weights_id: str = "unknown",
                 offload_state: Optional[bool] = None) -> None:
        super().__init__()
        self.bind_model_options(name=name, options=options, device=device, weights_id=weights_id,
                                offload_state=offload_state)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self._active = False  # True only while this adapter's own calls run (the model may be shared)
        self._hook = self.model.vision_encoder.register_forward_hook(self._count_encoder)

    def _count_encoder(self, module, args, output) -> None:
        if self._active:
            x = args[0] if args else None
            self.encoder_calls += int(x.shape[0]) if isinstance(x, torch.Tensor) else 1

    def signature(self) -> dict:
        return {
            "model": self.name, "adapter": self.kind, "adapter_version": ADAPTER_VERSION,
            "model_class": type(self.model).__name__, "weights_sha256": self.weights_id,
            "options": {"mask_threshold": self.mask_threshold, "dtype": self.options.dtype},
            "packages": {"transformers": package_version("transformers"), "torch": torch.__version__},
        }

    def open(self, frames: FrameSource) -> HfVideoSession:
        if len(frames) == 0:
            raise SambenchError("video has no frames")
        h, w = (int(v) for v in frames[0].shape[:2])
        state_dev = torch.device("cpu") if self.offload_state else self.device
        session = self.processor.init_video_session(
            video=None, inference_device=self.device, inference_state_device=state_dev, video_storage_device="cpu",
            max_vision_features_cache_size=len(frames), dtype=torch.float32)
        session.video_height, session.video_width = h, w
        session.processed_frames = LazyProcessedFrames(frames, self.processor.video_processor)
        return HfVideoSession(frames=frames, session=session)

    def propagate(self, session: HfVideoSession, prompt_frame: int, prompt: Optional[Prompt] = None,
                  mask: Optional[np.ndarray] = None, direction: str = "forward"
                  ) -> Iterator[tuple[int, np.ndarray, Optional[float]]]:
        self.check_request(session, prompt_frame, prompt, mask, direction)
        return self._propagate(session, int(prompt_frame), prompt, mask, direction)

    def _inputs(self, prompt: Optional[Prompt], mask: Optional[np.ndarray]) -> dict:
        if mask is not None:
            return {"input_masks": np.asarray(mask, dtype=bool)}
        out: dict = {}
        if prompt.points:
            out["input_points"] = [[[list(map(float, p)) for p in prompt.points]]]
            out["input_labels"] = [[[int(v) for v in prompt.labels]]]
        if prompt.box is not None:
            out["input_boxes"] = [[list(map(float, prompt.box))]]
        return out

    @torch.inference_mode()  # as a decorator: the mode is on only while the generator runs, not between yields
    def _propagate(self, hs: HfVideoSession, t0: int, prompt: Optional[Prompt], mask: Optional[np.ndarray],
                   direction: str) -> Iterator[tuple[int, np.ndarray, Optional[float]]]:
        s = hs.session
        self.propagations += 1
        size = [[s.video_height, s.video_width]]
        s.reset_tracking_data()
        self.processor.add_inputs_to_inference_session(s, frame_idx=t0, obj_ids=OBJ_ID, **self._inputs(prompt, mask))
        for reverse in [False] + ([True] if direction == "both" else []):
            steps = iter(self.model.propagate_in_video_iterator(s, start_frame_idx=t0, reverse=reverse))
            while True:
                self._active = True
                try:
                    out = next(steps)
                except StopIteration:
                    break
                finally:
                    self._active = False
                t = int(out.frame_idx)
                if reverse and t == t0:
                    continue  # the prompt frame was yielded by the forward pass
                logits = self.processor.post_process_masks([out.pred_masks], original_sizes=size, binarize=False)[0]
                score = float(torch.sigmoid(out.object_score_logits.float()).flatten()[0])
                yield t, (logits[0, 0] > self.mask_threshold).cpu().numpy(), score

    def close(self, session: HfVideoSession) -> None:
        if isinstance(session, HfVideoSession) and not session.closed:
            session.session.reset_inference_session()
            session.closed = True


def build_hf_video(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                   plugin: Optional[str] = None, options: Optional[dict] = None) -> HfVideoAdapter:
    """Registry factory for video adapter ``hf-video`` (``--checkpoint DIR`` overrides ``source``)."""
    where = str(card.path or card.name)
    if plugin is not None:
        raise SambenchError(f"model '{card.name}': a transformers model takes no plug-in (got {plugin})")
    opts = dict(options if options is not None else card.options)
    offload = opts.pop("offload_state", None)
    if offload is not None and not isinstance(offload, bool):
        raise SambenchError(f"{where}: option 'offload_state' must be true or false, got {offload!r}")
    if checkpoint is not None:
        opts["source"] = os.fspath(checkpoint)
    parsed = parse_hf_options(opts, where)
    _, net, processor, weights_id = load_hf_video(parsed.source, kind=card.adapter, model=card.name,
                                                  revision=parsed.revision)
    return HfVideoAdapter(net, processor, name=card.name, options=parsed, device=device, weights_id=weights_id,
                          offload_state=offload)


__all__ = ["HfVideoAdapter", "HfVideoSession", "IMAGE_KIND_TO_VIDEO", "LazyProcessedFrames", "VIDEO_FAMILIES",
           "build_hf_video", "load_hf_video"]
