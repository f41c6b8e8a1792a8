"""SAM 2.1 in video through Meta's official ``SAM2VideoPredictor``, each frame encoded once per session.

The network is the package's own ``SAM2VideoPredictor`` (``sam2.build_sam.build_sam2_video_predictor`` on
the package config ``configs/sam2.1/sam2.1_hiera_*.yaml``, ``apply_postprocessing`` = the card's
``dynamic_multimask``), with the weights sambench loads for the image adapter
(:func:`sambench.adapters.sam2.load_sam2_model`: strict, ``weights_only``; random-init cards draw the same
weights from ``seed``). Prompting and propagation are the predictor's own calls, in the order its notebook
uses them: ``reset_state``, ``add_new_points_or_box`` / ``add_new_mask`` on the prompt frame (object id 1,
coordinates in pixels, ``normalize_coords=True``), ``propagate_in_video`` forward and, for
``direction="both"``, again with ``reverse=True``. Masks are the predictor's video-resolution logits
``> mask_threshold`` (0.0, as the official demos); the score is the sigmoid of the frame's object-score logit.

**Encode once.** The official predictor keeps the backbone features of the most recently visited frame only,
so a second propagation re-encodes every frame. :class:`EncodeOncePredictor` (a subclass: only
``_get_image_feature`` is replaced) keeps each frame's backbone output (``backbone_fpn``, the three feature
maps the predictor reads) for the whole session, on the CPU when the model runs on an accelerator (moved
to the device on use: offload), and one copy of the position encodings (a function of the feature map size
only, equal for every frame). ``encoder_calls`` therefore grows by the number of distinct frames visited,
whatever the number of propagations.

**Frames are lazy.** The session's ``images`` is a sequence that reads and preprocesses frame ``t`` on
access exactly as ``sam2.utils.misc.load_video_frames`` does for a JPEG folder (PIL ``resize`` to
image_size², ÷255, ImageNet mean/std), so no video is ever held as one tensor. The inference state
(memories) lives on the CPU when ``offload_state`` is true (``offload_state_to_cpu``; default: on when the
device is not the CPU).

**Quiet.** ``propagate_in_video`` wraps its frames in a tqdm bar (``sam2.sam2_video_predictor.tqdm``, no option
to turn it off), one bar per propagation on stderr: about 200 per object in a full sweep. :func:`quiet_progress`
silences it for our calls only: the module's ``tqdm`` name is replaced by tqdm with ``disable=True``, under a
lock, for the generator's first step (where the bar is built; later steps only iterate it), and restored
after. tqdm itself, and ``propagate_in_video`` called by anyone else outside that window, are unchanged.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from sambench.adapters.base import package_version
from sambench.adapters.sam2 import VARIANTS, Sam2Options, load_sam2_model, parse_sam2_options
from sambench.adapters.video.base import FrameSource, SessionBase, VideoAdapter
from sambench.config import ModelCard
from sambench.types import Prompt, SambenchError

ADAPTER_VERSION = "1"

#: Options of the video adapter besides the SAM 2.1 adapter's (sambench/adapters/sam2.py OPTION_KEYS).
VIDEO_OPTION_KEYS = ("offload_state",)

#: Object id given to the predictor (one object per propagation).
OBJ_ID = 1

_IMG_MEAN = (0.485, 0.456, 0.406)
_IMG_STD = (0.229, 0.224, 0.225)

try:  # the sam2 package is an optional extra; the class below only exists where it is installed
    from sam2.sam2_video_predictor import SAM2VideoPredictor as _OfficialVideoPredictor
except ImportError:  # pragma: no cover - without sam2 the registry still lists the adapter
    _OfficialVideoPredictor = torch.nn.Module  # type: ignore[assignment,misc]


_PROGRESS_LOCK = threading.RLock()  # serialises the swaps of a library module's ``tqdm`` name


@contextmanager
def quiet_progress(function) -> Iterator[None]:
    """While inside, the ``tqdm`` that ``function``'s module calls (looked up in its globals: the name sam2 binds
    with ``from tqdm import tqdm``) is built with ``disable=True``; restored on exit (module docstring)."""
    namespace = inspect.unwrap(function).__globals__  # unwrap: torch.inference_mode() wraps the library's method
    with _PROGRESS_LOCK:
        saved = namespace.get("tqdm")
        if saved is None:  # a version without the bar: nothing to silence
            yield
            return
        namespace["tqdm"] = functools.partial(saved, disable=True)
        try:
            yield
        finally:
            namespace["tqdm"] = saved


def quiet_steps(function, *args, **kwargs) -> Iterator:
    """``function(*args, **kwargs)``'s generator with its progress bar silenced: its first step (the one that
    builds the bar) runs inside :func:`quiet_progress`, the rest as they come."""
    steps = function(*args, **kwargs)
    with quiet_progress(function):
        try:
            first = next(steps)
        except StopIteration:
            return
    yield first
    yield from steps


class LazyVideoFrames:
    """The predictor's ``inference_state["images"]`` over a :class:`FrameSource`: frame ``t`` as a
    normalised float32 (3, S, S) tensor, preprocessed on access as ``load_video_frames`` does."""

    def __init__(self, frames: FrameSource, image_size: int) -> None:
        self.frames = frames
        self.image_size = int(image_size)
        self._mean = torch.tensor(_IMG_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(_IMG_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, t: int) -> torch.Tensor:
        s = self.image_size
        img = np.array(Image.fromarray(np.ascontiguousarray(self.frames[int(t)])).convert("RGB").resize((s, s))) / 255.0
        x = torch.from_numpy(img).permute(2, 0, 1).to(torch.float32)
        return (x - self._mean) / self._std


class EncodeOncePredictor(_OfficialVideoPredictor):  # type: ignore[misc,valid-type]
    """``SAM2VideoPredictor`` whose frame features live for the session (module docstring).

    A session made by :meth:`open_session` carries ``sambench_features`` (frame → backbone_fpn on the
    storage device), ``sambench_pos`` (the shared position encodings) and ``sambench_encoded`` (frames
    encoded). States made by the official ``init_state`` keep the official one-frame cache.
    """

    def open_session(self, frames: FrameSource, *, offload_state: bool) -> dict:
        """``init_state`` on a lazy frame source, without warming frame 0 (nothing is encoded yet)."""
        if len(frames) == 0:
            raise SambenchError("video has no frames")
        h, w = (int(v) for v in frames[0].shape[:2])
        device = self.device
        state: dict[str, Any] = {
            "images": LazyVideoFrames(frames, self.image_size), "num_frames": len(frames),
            "offload_video_to_cpu": True, "offload_state_to_cpu": bool(offload_state),
            "video_height": h, "video_width": w, "device": device,
            "storage_device": torch.device("cpu") if offload_state else device,
            "point_inputs_per_obj": {}, "mask_inputs_per_obj": {}, "cached_features": {}, "constants": {},
            "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(), "obj_ids": [], "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {}, "frames_tracked_per_obj": {},
        }
        state["sambench_features"] = {}
        state["sambench_pos"] = None
        state["sambench_encoded"] = 0
        state["sambench_feature_device"] = torch.device("cpu") if device.type != "cpu" else device
        return state

    def _get_image_feature(self, inference_state, frame_idx, batch_size):
        store = inference_state.get("sambench_features")
        if store is None:  # an official init_state: the official behaviour
            return super()._get_image_feature(inference_state, frame_idx, batch_size)
        device = inference_state["device"]
        fpn = store.get(frame_idx)
        if fpn is None:
            image = inference_state["images"][frame_idx].to(device).float().unsqueeze(0)
            backbone_out = self.forward_image(image)
            inference_state["sambench_encoded"] += 1
            keep = inference_state["sambench_feature_device"]
            fpn = [f.to(keep) for f in backbone_out["backbone_fpn"]]
            store[frame_idx] = fpn
            if inference_state["sambench_pos"] is None:
                inference_state["sambench_pos"] = [p.to(keep) for p in backbone_out["vision_pos_enc"]]
        expanded = {
            "backbone_fpn": [f.to(device, non_blocking=True).expand(batch_size, -1, -1, -1) for f in fpn],
            "vision_pos_enc": [p.to(device, non_blocking=True).expand(batch_size, -1, -1, -1)
                               for p in inference_state["sambench_pos"]],
        }
        # the first element (the preprocessed image) is read by no caller; an empty tensor stands for it
        return (torch.empty(0, device=device),) + self._prepare_backbone_features(expanded)


def build_video_predictor(variant: str, *, dynamic_multimask: bool = True, overrides: Sequence[str] = (),
                          seed: int = 0) -> EncodeOncePredictor:
    """The official video predictor of ``variant`` as an :class:`EncodeOncePredictor` (CPU, eval mode),
    built by ``build_sam2_video_predictor`` with ``overrides`` (hydra, e.g. ``++model.image_size=256`` in
    tests); weights drawn from ``seed`` (callers load real ones)."""
    from sam2.build_sam import build_sam2_video_predictor  # lazy: the sam2 package is an optional extra

    target = f"++model._target_={EncodeOncePredictor.__module__}.{EncodeOncePredictor.__qualname__}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_sam2_video_predictor(VARIANTS[variant][0], ckpt_path=None, device="cpu", mode="eval",
                                           apply_postprocessing=dynamic_multimask,
                                           hydra_overrides_extra=[target, *overrides])
    return model.eval()


@dataclass
class Sam2VideoSession(SessionBase):
    """One open video: the frames and the predictor's inference state (with the per-frame feature store)."""

    frames: FrameSource
    state: dict
    closed: bool = False


class Sam2VideoAdapter(VideoAdapter):
    """Official ``SAM2VideoPredictor`` propagation with encode-once frame features (module docstring)."""

    kind = "sam2-video"
    session_type = Sam2VideoSession

    def __init__(self, predictor: EncodeOncePredictor, *, name: str, options: Sam2Options,
                 device: str | torch.device = "auto", weights_id: str = "unknown", offload_state: Optional[bool] = None,
                 extra_signature: Optional[dict] = None) -> None:
        super().__init__()
        self.bind_model_options(name=name, options=options, device=device, weights_id=weights_id,
                                offload_state=offload_state)
        self.predictor = predictor.to(self.device).eval()
        self._extra_signature = dict(extra_signature or {})

    def signature(self) -> dict:
        sig = {
            "model": self.name, "adapter": self.kind, "adapter_version": ADAPTER_VERSION,
            "variant": self.options.variant, "weights_sha256": self.weights_id,
            "image_size": int(self.predictor.image_size),
            "options": self.options.output_affecting(),
            "packages": {"sam2": package_version("sam2"), "torch": torch.__version__},
        }
        sig.update(self._extra_signature)
        return sig

    def open(self, frames: FrameSource) -> Sam2VideoSession:
        return Sam2VideoSession(frames=frames, state=self.predictor.open_session(frames, offload_state=self.offload_state))

    def propagate(self, session: Sam2VideoSession, prompt_frame: int, prompt: Optional[Prompt] = None,
                  mask: Optional[np.ndarray] = None, direction: str = "forward"
                  ) -> Iterator[tuple[int, np.ndarray, Optional[float]]]:
        self.check_request(session, prompt_frame, prompt, mask, direction)
        return self._propagate(session, int(prompt_frame), prompt, mask, direction)

    @torch.inference_mode()  # as a decorator: the mode is on only while the generator runs, not between yields
    def _propagate(self, session: Sam2VideoSession, t0: int, prompt: Optional[Prompt], mask: Optional[np.ndarray],
                   direction: str) -> Iterator[tuple[int, np.ndarray, Optional[float]]]:
        p, st = self.predictor, session.state
        self.propagations += 1
        before = st["sambench_encoded"]
        try:
            p.reset_state(st)
            if mask is not None:
                p.add_new_mask(st, frame_idx=t0, obj_id=OBJ_ID, mask=np.asarray(mask, dtype=bool))
            else:
                pts = np.asarray(prompt.points, dtype=np.float32) if prompt.points else None
                lbl = np.asarray(prompt.labels, dtype=np.int32) if prompt.points else None
                box = np.asarray(prompt.box, dtype=np.float32) if prompt.box is not None else None
                p.add_new_points_or_box(st, frame_idx=t0, obj_id=OBJ_ID, points=pts, labels=lbl, box=box)
            passes = [False] + ([True] if direction == "both" else [])
            for reverse in passes:
                for t, _, logits in quiet_steps(p.propagate_in_video, st, start_frame_idx=t0, reverse=reverse):
                    if reverse and t == t0:
                        continue  # the prompt frame was yielded by the forward pass
                    self.encoder_calls += st["sambench_encoded"] - before
                    before = st["sambench_encoded"]
                    yield int(t), (logits[0, 0] > self.mask_threshold).cpu().numpy(), self._score(st, t)
        finally:
            self.encoder_calls += st["sambench_encoded"] - before

    @staticmethod
    def _score(state: dict, t: int) -> Optional[float]:
        """Sigmoid of the object-score logit the predictor stored for frame ``t`` (object 0)."""
        out = state["output_dict_per_obj"].get(0, {})
        cur = out.get("cond_frame_outputs", {}).get(t) or out.get("non_cond_frame_outputs", {}).get(t)
        if cur is None or cur.get("object_score_logits") is None:
            return None
        return float(torch.sigmoid(cur["object_score_logits"].float()).flatten()[0])

    def close(self, session: Sam2VideoSession) -> None:
        if isinstance(session, Sam2VideoSession) and not session.closed:
            self.predictor.reset_state(session.state)
            session.state["sambench_features"].clear()
            session.state["sambench_pos"] = None
            session.closed = True


def parse_video_options(options: Optional[dict], where: str, extra_keys: Sequence[str] = ()) -> tuple[Sam2Options, Optional[bool]]:
    """SAM 2.1 options plus ``offload_state`` (true/false; default: on off the CPU)."""
    opts = dict(options or {})
    offload = opts.pop("offload_state", None)
    if offload is not None and not isinstance(offload, bool):
        raise SambenchError(f"{where}: option 'offload_state' must be true or false, got {offload!r}")
    return parse_sam2_options(opts, where=where, extra_keys=(*VIDEO_OPTION_KEYS, *extra_keys)), offload


def video_predictor_from(model: torch.nn.Module, options: Sam2Options) -> EncodeOncePredictor:
    """A video predictor holding the weights of ``model`` (a loaded ``SAM2Base``; strict)."""
    predictor = build_video_predictor(options.variant, dynamic_multimask=options.dynamic_multimask)
    predictor.load_state_dict(model.state_dict(), strict=True)
    return predictor.eval()


def build_sam2_video(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                     plugin: Optional[str] = None, options: Optional[dict] = None) -> Sam2VideoAdapter:
    """Registry factory for video adapter ``sam2-video`` (a ``sam2`` card with ``video_adapter: sam2-video``)."""
    where = str(card.path or card.name)
    if plugin is not None:
        raise SambenchError(f"model '{card.name}': a sam2 model takes no plug-in (got {plugin})")
    opts, offload = parse_video_options(options if options is not None else card.options, where)
    loaded = load_sam2_model(card, options=opts, checkpoint=checkpoint)
    predictor = video_predictor_from(loaded.model, opts)
    return Sam2VideoAdapter(predictor, name=card.name, options=opts, device=device, weights_id=loaded.weights_id,
                            offload_state=offload)


def build_stable_sam2_video(card: ModelCard, *, device: str = "auto", checkpoint: Optional[str] = None,
                            plugin: Optional[str] = None, options: Optional[dict] = None) -> Sam2VideoAdapter:
    """Registry factory for ``stable-sam2-video``: the card's Stable-SAM 2.1 plug-in (trained, or fresh when
    the card allows it) injected into the video predictor's mask decoder
    (:func:`sambench.adapters.stable_sam.inject.inject_plugin`, the same hooks as for images)."""
    from sambench.adapters.stable_sam.adapter import build_stable_sam  # torch + plug-in modules: heavy
    from sambench.adapters.stable_sam.inject import inject_plugin  # (same reason)

    opts = dict(options if options is not None else card.options)
    offload = opts.pop("offload_state", None)
    if offload is not None and not isinstance(offload, bool):
        raise SambenchError(f"{card.path or card.name}: option 'offload_state' must be true or false, got {offload!r}")
    image = build_stable_sam(card, device="cpu", checkpoint=checkpoint, plugin=plugin, options=opts)
    if image.base_signature is None or not hasattr(image.model, "sam_mask_decoder"):
        raise SambenchError(f"model '{card.name}': stable-sam2-video needs a SAM 2.1 base")
    image.injection.remove()
    predictor = video_predictor_from(image.model, image.options)
    plug = image.plugin
    injection = inject_plugin(predictor, plug)
    adapter = Sam2VideoAdapter(predictor, name=card.name, options=image.options, device=device,
                               weights_id=image.weights_id, offload_state=offload,
                               extra_signature={"base": image.base_signature.to_dict(), "plugin_id": image.plugin_id,
                                                "plugin_config": plug.cfg.to_dict()})
    adapter.kind = "stable-sam2-video"
    plug.to(adapter.device)
    adapter.injection = injection  # type: ignore[attr-defined]
    adapter.plugin = plug  # type: ignore[attr-defined]
    return adapter


__all__ = ["EncodeOncePredictor", "LazyVideoFrames", "Sam2VideoAdapter", "Sam2VideoSession", "build_sam2_video",
           "build_stable_sam2_video", "build_video_predictor", "video_predictor_from"]
