"""Robust training of the Stable-SAM plug-in on a frozen SAM, HQ-SAM or SAM 2.1 (``sambench train stable-sam``).

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

Steps 1–3 (the configuration, data, augmentation, prompts and targets) are :mod:`sambench.training.data`;
this module is steps 4–6: the loss, the loop, its log and its resume file.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sambench.adapters.decoding import resolve_device
from sambench.adapters.stable_sam.base import LoadedBase, load_base, resolve_base_card, split_options
from sambench.adapters.stable_sam.inject import inject_plugin
from sambench.adapters.stable_sam.modules import PluginConfig, StableSamPlugin
from sambench.adapters.stable_sam.plugin_io import atomic_torch_save, save_plugin_file
from sambench.config import ModelCard
from sambench.training.data import TrainConfig, TrainItem, build_item, open_training_data
from sambench.training.decode import decode_logits, encode_images
from sambench.types import SambenchError, first_line, keyed_rng, stable_hash

RESUME_FORMAT = "sambench-stable-sam-resume"
CSV_FIELDS = ["step", "epoch", "loss", "bce", "dice", "prompts", "gt_box", "noisy_box", "points", "skipped",
              "lr", "elapsed_s"]


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
            raise SambenchError(f"{resume_path}: unreadable resume file ({first_line(exc)}); "
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
