"""Robust training of the Stable-SAM plug-in on a frozen SAM / HQ-SAM (``sambench train stable-sam``).

What one step does (every choice the paper leaves open is ours and listed in docs/stable-sam.md):

1. **Images.** ``batch_size`` images are taken in a per-epoch order that is a keyed permutation
   (``default_rng(stable_hash(seed, "order", epoch))``) of every image of every training dataset.
2. **Augmentation** (keyed by ``(seed, epoch, step, slot)``, no global RNG): horizontal flip with
   probability 0.5, then HQ-SAM's large-scale jitter: the image is resized (aspect kept) so that its
   longest side is ``1024·s`` with ``s ~ U[jitter]`` (default 0.1–2.0), randomly cropped to at most
   1024 × 1024 and zero-padded bottom/right to 1024 × 1024 (the model input frame). Masks follow
   (area/linear resize, ≥ 0.5). Without augmentation the image is SAM-resized (longest side 1024) and
   padded — then its image embedding can be cached.
3. **Objects and prompts.** Up to ``objects_per_image`` objects with at least ``min_object_pixels``
   pixels in the frame (a keyed random subset); each gets ONE random prompt, kind uniform over
   {GT box, noisy box, k positive points}: ``sambench.inputs.prompts.gt_box``; ``noisy_box`` with scale
   ``~ U[noise_scale]`` (default 0.1–0.5) clamped to the valid image area; ``random_points`` with k
   uniform over ``point_counts`` (default 1, 2, 3, 5, 10). Every prompt — even an ambiguous single
   point — is supervised with the whole-object mask.
4. **Forward.** The frozen image encoder runs under ``no_grad``; the decoder runs with the plug-in
   injected, ``multimask_output=False`` (for HQ-SAM, the base card's ``hq_token_only`` — the output the
   evaluation adapter returns).
5. **Loss.** On the 256 × 256 low-resolution logits: mean over prompts of BCE-with-logits + soft Dice
   (``1 − (2Σpt + 1)/(Σp + Σt + 1)``), against the object mask in the 1024 frame area-averaged to
   256 × 256 (a soft target in [0, 1]; the padded area counts as background).
6. **Update.** Adam (lr 1e-3) on the plug-in parameters only; AMP (fp16 autocast + GradScaler) on CUDA.

Outputs next to ``out`` (``PLUGIN.pt``): ``PLUGIN.loss.csv`` (one row per step), ``PLUGIN.resume.pt``
(plug-in + optimizer + scaler state + step, written every ``save_every`` steps and at the end). A run
whose resume file exists continues from it (after checking it was made by the same configuration,
data and base); since every random draw is keyed by (seed, epoch, step), the resumed run ends with the
same weights as an uninterrupted one. ``max_steps`` caps the total number of steps (not the steps of
this invocation), so ``--max-steps 100`` then ``--max-steps 200`` trains 200 steps in two sittings.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sambench.config import ModelCard
from sambench.inputs.prompts import gt_box, noisy_box, random_points
from sambench.adapters.stable_sam.base import LoadedBase, load_base, resolve_base_card, split_options
from sambench.training.decode import decode_logits, encode_images
from sambench.adapters.stable_sam.inject import inject_plugin
from sambench.adapters.stable_sam.modules import PluginConfig, StableSamPlugin
from sambench.adapters.stable_sam.plugin_io import atomic_torch_save, save_plugin_file
from sambench.types import SambenchError, keyed_rng, stable_hash

FRAME = 1024
LOWRES = 256
#: The prompt kinds (a subset of sambench.config.vocabulary.PROMPT_KINDS) training draws from.
TRAINING_PROMPT_KINDS = ("gt-box", "noisy-box", "points")
RESUME_FORMAT = "sambench-stable-sam-resume"
CSV_FIELDS = ["step", "epoch", "loss", "bce", "dice", "prompts", "gt_box", "noisy_box", "points", "skipped",
              "lr", "elapsed_s"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (recorded in the plug-in and resume files).

    See the module docstring for the meaning of each field; ``plugin`` holds the
    :class:`~sambench.adapters.stable_sam.modules.PluginConfig` fields.
    """

    epochs: int = 1
    batch_size: int = 4
    lr: float = 1e-3
    seed: int = 0
    objects_per_image: int = 4
    prompt_kinds: tuple = TRAINING_PROMPT_KINDS
    point_counts: tuple = (1, 2, 3, 5, 10)
    noise_scale: tuple = (0.1, 0.5)
    augment: bool = True
    jitter: tuple = (0.1, 2.0)
    min_object_pixels: int = 16
    plugin_seed: int = 0
    plugin: dict = field(default_factory=lambda: PluginConfig().to_dict())

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.objects_per_image < 1:
            raise SambenchError("train stable-sam: epochs, batch size and objects per image must be >= 1")
        if not self.lr > 0:
            raise SambenchError(f"train stable-sam: learning rate must be > 0, got {self.lr}")
        bad = [k for k in self.prompt_kinds if k not in TRAINING_PROMPT_KINDS]
        if bad or not self.prompt_kinds:
            raise SambenchError(f"train stable-sam: prompt kinds must be among {', '.join(TRAINING_PROMPT_KINDS)}, got {bad or 'none'}")
        if not self.point_counts or any(int(k) < 1 for k in self.point_counts):
            raise SambenchError("train stable-sam: point counts must be integers >= 1")
        lo, hi = self.jitter
        if not 0 < lo <= hi:
            raise SambenchError(f"train stable-sam: jitter range must satisfy 0 < min <= max, got {self.jitter}")

    def identity(self) -> dict:
        d = asdict(self)
        for k in ("prompt_kinds", "point_counts", "noise_scale", "jitter"):
            d[k] = list(d[k])
        return d


@dataclass
class TrainItem:
    """One augmented image in the 1024 frame with its prompts (input-frame pixels) and soft targets."""

    image: np.ndarray  # uint8 1024×1024×3
    cache_key: Optional[tuple]
    kinds: list
    boxes: list  # per prompt: (4,) float array or None
    points: list  # per prompt: (k, 2) float array or None
    targets: np.ndarray  # float32 N×256×256


@dataclass
class TrainResult:
    """What :func:`train_stable_sam` did: file paths, steps, the loss of every step of this run."""

    plugin_path: Path
    resume_path: Path
    log_path: Path
    start_step: int
    steps: int
    total_steps: int
    losses: list
    samples: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


def side_paths(out: Path) -> tuple[Path, Path]:
    """(resume file, loss CSV) next to the plug-in file ``out``: ``X.resume.pt``, ``X.loss.csv``."""
    stem = out.name[:-len(out.suffix)] if out.suffix else out.name
    return out.with_name(stem + ".resume.pt"), out.with_name(stem + ".loss.csv")


# --------------------------------------------------------------------------------------------- data


def open_training_data(specs: Sequence[Any]) -> list:
    """Datasets for ``--data`` values: a directory → ``open_dataset(dir, format="folder")``; any other
    string → ``open_dataset(name)`` (e.g. ``grabcut-sample``); a Dataset object is used as is."""
    out = []
    for s in specs:
        if hasattr(s, "ids") and hasattr(s, "load"):
            out.append(s)
            continue
        from sambench.datasets import open_dataset

        spec = str(s)
        out.append(open_dataset(spec, format="folder") if Path(spec).expanduser().is_dir() else open_dataset(spec))
    if not out:
        raise SambenchError("train stable-sam: no training data (give --data DIR at least once)")
    return out


def _resize(a: np.ndarray, size_wh: tuple[int, int], shrink: bool) -> np.ndarray:
    return cv2.resize(a, size_wh, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def augment_sample(image: np.ndarray, masks: list, rng: Optional[np.random.Generator], cfg: TrainConfig,
                   jitter: bool = True) -> tuple[np.ndarray, list, tuple[int, int]]:
    """Flip + large-scale jitter (``rng`` given and ``cfg.augment``) or the plain SAM resize (no rng).

    Returns the 1024 × 1024 uint8 image, the boolean 1024 × 1024 masks and the (h, w) of the valid
    (un-padded) area. See the module docstring for the exact policy.
    """
    h, w = image.shape[:2]
    scale = 1.0
    if rng is not None and cfg.augment:
        if rng.random() < 0.5:
            image = image[:, ::-1]
            masks = [m[:, ::-1] for m in masks]
        scale = float(rng.uniform(*cfg.jitter)) if jitter else 1.0
    f = FRAME * scale / max(h, w)
    nh, nw = max(1, int(h * f + 0.5)), max(1, int(w * f + 0.5))
    shrink = f < 1.0
    img = _resize(np.ascontiguousarray(image), (nw, nh), shrink)
    ms = [_resize(np.ascontiguousarray(m, dtype=np.float32), (nw, nh), shrink) >= 0.5 for m in masks]
    y0 = int(rng.integers(0, nh - FRAME + 1)) if (rng is not None and nh > FRAME) else 0
    x0 = int(rng.integers(0, nw - FRAME + 1)) if (rng is not None and nw > FRAME) else 0
    vh, vw = min(nh, FRAME), min(nw, FRAME)
    canvas = np.zeros((FRAME, FRAME, 3), dtype=np.uint8)
    canvas[:vh, :vw] = img[y0:y0 + vh, x0:x0 + vw]
    out_masks = []
    for m in ms:
        c = np.zeros((FRAME, FRAME), dtype=bool)
        c[:vh, :vw] = m[y0:y0 + vh, x0:x0 + vw]
        out_masks.append(c)
    return canvas, out_masks, (vh, vw)


def training_prompt(kind: str, mask: np.ndarray, valid_hw: tuple[int, int], rng: np.random.Generator,
                cfg: TrainConfig) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(box (4,), None) or (None, points (k, 2)) for one object mask in the 1024 frame."""
    if kind == "points":
        k = int(cfg.point_counts[int(rng.integers(len(cfg.point_counts)))])
        p = random_points(mask, k, rng)
        return None, np.asarray(p.points, dtype=np.float32)
    box = gt_box(mask)
    if kind == "noisy-box":
        s = float(rng.uniform(*cfg.noise_scale))
        box = noisy_box(box, valid_hw, s, rng)
    return np.asarray(box, dtype=np.float32), None


def soft_target(mask: np.ndarray) -> np.ndarray:
    """A 1024² boolean mask area-averaged to 256² float32 (fraction of foreground per low-res pixel)."""
    return cv2.resize(mask.astype(np.float32), (LOWRES, LOWRES), interpolation=cv2.INTER_AREA)


def build_item(dataset, image_id: str, rng: np.random.Generator, cfg: TrainConfig) -> Optional[TrainItem]:
    """Load, augment and prompt one image; None when no object is left (after a jitter-free retry)."""
    sample = dataset.load(image_id)
    masks = [o.mask for o in sample.objects]
    if not masks:
        return None
    for attempt in (True, False):
        img, ms, valid = augment_sample(sample.image, masks, rng, cfg, jitter=attempt)
        ok = [i for i, m in enumerate(ms) if int(m.sum()) >= cfg.min_object_pixels]
        if ok:
            break
    else:
        return None
    n = min(cfg.objects_per_image, len(ok))
    chosen = [ok[int(i)] for i in rng.choice(len(ok), size=n, replace=False)]
    kinds, boxes, points, targets = [], [], [], []
    for oi in chosen:
        kind = cfg.prompt_kinds[int(rng.integers(len(cfg.prompt_kinds)))]
        b, p = training_prompt(kind, ms[oi], valid, rng, cfg)
        kinds.append(kind)
        boxes.append(b)
        points.append(p)
        targets.append(soft_target(ms[oi]))
    key = None if cfg.augment else (getattr(dataset, "name", "?"), image_id)
    return TrainItem(image=img, cache_key=key, kinds=kinds, boxes=boxes, points=points,
                     targets=np.stack(targets).astype(np.float32))


# --------------------------------------------------------------------------------------------- loss


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt BCE-with-logits (pixel mean) and soft Dice loss for logits/targets N × 256 × 256."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1.0 - (2.0 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return bce, dice


def item_logits(sam: torch.nn.Module, emb: torch.Tensor, interm: Optional[list], item: TrainItem,
                hq_token_only: bool) -> torch.Tensor:
    """Low-res single-mask logits (N × 256 × 256) for every prompt of ``item``, in its order.

    Prompts are decoded in groups of equal shape (boxes; points with the same k)."""
    dev = emb.device
    groups: dict[tuple, list[int]] = {}
    for i, (b, p) in enumerate(zip(item.boxes, item.points)):
        groups.setdefault(("box", 0) if b is not None else ("points", len(p)), []).append(i)
    out: list[Optional[torch.Tensor]] = [None] * len(item.kinds)
    for (kind, _), idx in groups.items():
        if kind == "box":
            boxes = torch.as_tensor(np.stack([item.boxes[i] for i in idx]), device=dev)
            low, _ = decode_logits(sam, emb, interm, boxes=boxes, hq_token_only=hq_token_only)
        else:
            pts = torch.as_tensor(np.stack([item.points[i] for i in idx]), device=dev)
            labels = torch.ones(pts.shape[:2], dtype=torch.int, device=dev)
            low, _ = decode_logits(sam, emb, interm, points=pts, labels=labels, hq_token_only=hq_token_only)
        for j, i in enumerate(idx):
            out[i] = low[j, 0]
    return torch.stack(out)


# ------------------------------------------------------------------------------------------ trainer


def _data_identity(datasets: list) -> list:
    return [{"name": getattr(d, "name", "?"), "images": len(d.ids()), "ids_hash": stable_hash(list(d.ids()))}
            for d in datasets]


def _read_log(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if int(r["step"]) <= upto]


def _write_log(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        wr = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        wr.writeheader()
        for r in rows:
            wr.writerow(r)


class _EmbeddingSource:
    """Image embeddings for a batch of items: cached per (dataset, image id) when the item allows it."""

    def __init__(self, sam: torch.nn.Module, device: torch.device, cache: Optional[dict], amp: bool,
                 base_id: tuple) -> None:
        self.sam, self.device, self.cache, self.amp, self.base_id = sam, device, cache, amp, base_id
        self.encoder_calls = 0

    def _key(self, item: TrainItem) -> Optional[tuple]:
        return None if (self.cache is None or item.cache_key is None) else self.base_id + item.cache_key

    def __call__(self, items: list[TrainItem]) -> list[tuple[torch.Tensor, Optional[list]]]:
        out: list = [None] * len(items)
        todo = []
        for i, it in enumerate(items):
            key = self._key(it)
            hit = self.cache.get(key) if key is not None else None
            if hit is not None:
                out[i] = (hit[0].to(self.device), None if hit[1] is None else [t.to(self.device) for t in hit[1]])
            else:
                todo.append(i)
        if todo:
            x = torch.stack([torch.from_numpy(items[i].image).permute(2, 0, 1) for i in todo]).to(self.device).float()
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                emb, interm = encode_images(self.sam, x)
            emb = emb.float()
            self.encoder_calls += len(todo)
            for j, i in enumerate(todo):
                e = emb[j:j + 1]
                it_interm = None if interm is None else [t[j:j + 1].float() for t in interm]
                out[i] = (e, it_interm)
                key = self._key(items[i])
                if key is not None:
                    self.cache[key] = (e.cpu(), None if it_interm is None else [t.cpu() for t in it_interm])
        return out


def train_stable_sam(base_card: Union[str, ModelCard], checkpoint: Optional[str], data_specs: Sequence[Any],
                     epochs: int = 1, out: Union[str, Path] = "stable-sam-plugin.pt", device: str = "auto",
                     batch_size: int = 4, lr: float = 1e-3, seed: int = 0, *, max_steps: Optional[int] = None,
                     plugin_options: Optional[dict] = None, base_options: Optional[dict] = None,
                     objects_per_image: int = 4, augment: bool = True, save_every: int = 50,
                     restart: bool = False, progress: bool = True, embedding_cache: Optional[dict] = None,
                     base: Optional[LoadedBase] = None, **config_overrides: Any) -> TrainResult:
    """Train a Stable-SAM plug-in on a frozen base and write it to ``out`` (see module docstring).

    ``base_card``: a SAM/HQ-SAM card name (``sam-vit-l``) or a Stable-SAM card (its ``base:`` is used,
    and its options are defaults). ``checkpoint``: base weights (None: the card's file or random init
    for cards without one). ``data_specs``: ``--data`` values or Dataset objects. ``device``: auto / cpu /
    cuda[:N]. ``max_steps``: cap on the total step count. ``plugin_options``: PluginConfig fields.
    ``base_options``: overrides of the base adapter options (e.g. ``{"seed": 1}``). ``embedding_cache``:
    a dict reused across calls to skip the encoder for un-augmented images (tests, ablations); keys are
    ``(variant, hq, weights_id, dataset name, image id)``, values ``(embedding 1×256×64×64, interm)``.
    ``base``: an already loaded base (must match ``base_card``; for tests). Other keyword arguments set
    :class:`TrainConfig` fields (``jitter``, ``point_counts``, ``noise_scale``, ``prompt_kinds``,
    ``min_object_pixels``, ``plugin_seed``).
    """
    out = Path(out).expanduser()
    resume_path, log_path = side_paths(out)
    t = _Training.start(base_card, checkpoint, data_specs, device, base_options, plugin_options, base, embedding_cache,
                        max_steps, TrainConfig(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                                               seed=int(seed), objects_per_image=int(objects_per_image),
                                               augment=bool(augment),
                                               **{k: (tuple(v) if isinstance(v, list) else v)
                                                  for k, v in config_overrides.items()}))
    start_step = t.resume(resume_path, restart)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_log(log_path, _read_log(log_path, start_step) if start_step else [])
    injection = inject_plugin(t.sam, t.plugin)
    t0 = time.perf_counter()
    try:
        step, losses, samples = t.loop(start_step, log_path, resume_path, save_every, progress, t0)
    finally:
        injection.remove()
    seconds = time.perf_counter() - t0
    t.save_resume(resume_path, step)
    train_config = {**t.identity["config"], "data": t.identity["data"], "total_steps": t.total_steps,
                    "max_steps": max_steps, "torch": str(torch.__version__)}
    save_plugin_file(out, t.plugin, t.base.signature, train_config=train_config, steps=step)
    return TrainResult(plugin_path=out, resume_path=resume_path, log_path=log_path, start_step=start_step,
                       steps=step, total_steps=t.total_steps, losses=losses, samples=samples, seconds=seconds)


class _Training:
    """One training session: the frozen base, the data, the plug-in and its optimiser, stepped by :meth:`loop`."""

    @classmethod
    def start(cls, base_card, checkpoint, data_specs, device, base_options, plugin_options, base, embedding_cache,
              max_steps, cfg: TrainConfig) -> "_Training":
        """Resolve the base (card, options, weights), the plug-in configuration and the training data."""
        from sambench.adapters.sam.adapter import resolve_device

        t = cls()
        t.dev = resolve_device(device)
        t.amp = t.dev.type == "cuda"
        b_card, s_card = resolve_base_card(base_card)
        opts = {**b_card.options, **(s_card.options if s_card is not None else {}), **(base_options or {})}
        _, stable_opts = split_options(opts)
        pcfg = PluginConfig.from_options({**stable_opts, **(plugin_options or {})})
        t.cfg = cfg = TrainConfig(**{**asdict(cfg), "plugin": pcfg.to_dict()})
        t.base = base if base is not None else load_base(b_card, checkpoint, opts, where=str(b_card.path or b_card.name))
        t.sam = t.base.model.to(t.dev).eval()
        t.sam.requires_grad_(False)
        t.hq_token_only = bool(getattr(t.base.sam_options, "hq_token_only", False))
        t.datasets = open_training_data(data_specs)
        t.items = [(di, iid) for di, d in enumerate(t.datasets) for iid in d.ids()]
        if not t.items:
            raise SambenchError("train stable-sam: the training data has no images")
        t.steps_per_epoch = math.ceil(len(t.items) / cfg.batch_size)
        t.total_steps = cfg.epochs * t.steps_per_epoch
        t.stop_at = t.total_steps if max_steps is None else min(t.total_steps, int(max_steps))
        t.identity = {"config": cfg.identity(), "data": _data_identity(t.datasets), "base": t.base.signature.to_dict()}
        t.plugin = StableSamPlugin(pcfg, seed=cfg.plugin_seed).to(t.dev)
        t.optimizer = torch.optim.Adam(t.plugin.parameters(), lr=cfg.lr)
        t.scaler = torch.amp.GradScaler("cuda", enabled=t.amp)
        sig = t.base.signature
        t.embed = _EmbeddingSource(t.sam, t.dev, embedding_cache, t.amp, (sig.variant, sig.hq, sig.weights_id))
        t.perms = {}
        return t

    def resume(self, resume_path: Path, restart: bool) -> int:
        """The step to start from: 0, or the resume file's after restoring plug-in and optimiser state."""
        if resume_path.is_file() and restart:
            resume_path.unlink()
        if not resume_path.is_file():
            return 0
        try:
            st = torch.load(resume_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise SambenchError(f"{resume_path}: unreadable resume file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                                f"delete it or pass --restart") from None
        if not isinstance(st, dict) or st.get("format") != RESUME_FORMAT:
            raise SambenchError(f"{resume_path}: not a Stable-SAM resume file; delete it or pass --restart")
        if st.get("identity") != self.identity:
            raise SambenchError(f"{resume_path}: was written by a run with another configuration, data or base; "
                                f"use another --out, or pass --restart to start over")
        self.plugin.load_state_dict(st["plugin_state"])
        self.optimizer.load_state_dict(st["optimizer_state"])
        if self.amp and st.get("scaler_state"):
            self.scaler.load_state_dict(st["scaler_state"])
        return int(st["step"])

    def save_resume(self, resume_path: Path, step_done: int) -> None:
        atomic_torch_save({"format": RESUME_FORMAT, "identity": self.identity, "step": step_done,
                           "plugin_state": {k: v.detach().cpu() for k, v in self.plugin.state_dict().items()},
                           "optimizer_state": self.optimizer.state_dict(),
                           "scaler_state": self.scaler.state_dict() if self.amp else None}, resume_path)

    def batch(self, step: int) -> tuple[list, int]:
        """The augmented, prompted items of ``step`` (keyed by seed, epoch, step, slot) and how many were skipped."""
        cfg = self.cfg
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch not in self.perms:
            self.perms[epoch] = keyed_rng(cfg.seed, "order", epoch).permutation(len(self.items))
        built, skipped = [], 0
        for slot, idx in enumerate(self.perms[epoch][within * cfg.batch_size:(within + 1) * cfg.batch_size]):
            di, iid = self.items[int(idx)]
            try:
                it = build_item(self.datasets[di], iid, keyed_rng(cfg.seed, "sample", epoch, step, slot), cfg)
            except SambenchError:
                it = None
            if it is None:
                skipped += 1
            else:
                built.append(it)
        return built, skipped

    def step(self, built: list) -> tuple[float, dict]:
        """One optimiser step on ``built``: its loss and the loss columns of its log row."""
        embs = self.embed(built)
        self.optimizer.zero_grad(set_to_none=True)
        bces, dices = [], []
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
            for it, (e, im) in zip(built, embs):
                logits = item_logits(self.sam, e, im, it, self.hq_token_only)
                bce, dice = bce_dice_loss(logits, torch.from_numpy(it.targets).to(self.dev))
                bces.append(bce)
                dices.append(dice)
        bce_all, dice_all = torch.cat(bces), torch.cat(dices)
        loss = (bce_all + dice_all).mean()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        kinds = [k for it in built for k in it.kinds]
        columns = {"loss": f"{loss.item():.6f}", "bce": f"{bce_all.mean().item():.6f}",
                   "dice": f"{dice_all.mean().item():.6f}", "prompts": len(kinds), "gt_box": kinds.count("gt-box"),
                   "noisy_box": kinds.count("noisy-box"), "points": kinds.count("points")}
        return float(loss.item()), columns

    def loop(self, start_step: int, log_path: Path, resume_path: Path, save_every: int, progress: bool,
             t0: float) -> tuple[int, list, int]:
        """Steps from ``start_step`` to the end: one log row each, resume files every ``save_every`` steps.
        Returns (steps done in total, this run's losses, images seen)."""
        losses: list[float] = []
        samples, step, ema = 0, start_step, None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.stop_at, initial=start_step, desc="stable-sam", unit="step", dynamic_ncols=True)
        try:
            self.plugin.train()
            with open(log_path, "a", newline="", encoding="utf-8") as log_fh:
                writer = csv.DictWriter(log_fh, fieldnames=CSV_FIELDS)
                while step < self.stop_at:
                    built, skipped = self.batch(step)
                    row = {"step": step + 1, "epoch": step // self.steps_per_epoch, "prompts": 0, "gt_box": 0,
                           "noisy_box": 0, "points": 0, "skipped": skipped, "lr": self.cfg.lr}
                    if built:
                        loss, columns = self.step(built)
                        row.update(columns)
                        losses.append(loss)
                        samples += len(built)
                        ema = losses[-1] if ema is None else 0.9 * ema + 0.1 * losses[-1]
                    else:
                        row.update(loss="", bce="", dice="")
                    row["elapsed_s"] = f"{time.perf_counter() - t0:.3f}"
                    writer.writerow(row)
                    log_fh.flush()
                    step += 1
                    if bar is not None:
                        bar.update(1)
                        if ema is not None:
                            bar.set_postfix(loss=f"{ema:.4f}")
                    if save_every and step % int(save_every) == 0 and step < self.stop_at:
                        self.save_resume(resume_path, step)
        finally:
            if bar is not None:
                bar.close()
        return step, losses, samples
