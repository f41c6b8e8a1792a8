"""The words a protocol card (and ``--corruption``) may use: names and their grammar only, no numpy, no torch.

The stages above implement these words and read them from here, so each list is written once: adapters
implement the preprocessing modes and mask selections (:mod:`sambench.adapters.base`), the prompt
generators the prompt kinds and box frames (:mod:`sambench.inputs.prompts`), the click simulator the
click starts (:mod:`sambench.inputs.clicks`) and the corruption registry the corruption names
(:mod:`sambench.inputs.corruptions`, which defines one corruption per name here, in this order).
"""

from __future__ import annotations

from typing import Iterable

from sambench.types import SambenchError

# ------------------------------------------------------------------------------------------ prompts

#: Preprocessing modes a protocol may ask for (adapters implement them, sambench/adapters/base.py).
#: ``sam``: the model's own transform (SAM: longest side to 1024, pad to square).
#: ``hq-sam-1024``: image and prompts resized to 1024×1024 without keeping aspect (HQ-SAM's evaluation).
PREPROCESSING_MODES = ("sam", "hq-sam-1024")

#: Frames a box setting's GT box is measured in (sambench/inputs/prompts.py ``box_in_frame``). ``label``:
#: the original label's extreme foreground pixels. ``hq-sam-1024``: HQ-SAM's evaluation box, taken from
#: the label resized to 1024×1024 without keeping aspect, expressed back in original pixels.
BOX_FRAMES = ("label", "hq-sam-1024")

#: Mask-selection policies. ``single``: one mask per prompt (``multimask_output=False``).
#: ``best-of-3``: three masks, keep the one with the highest predicted IoU.
MASK_SELECTIONS = ("single", "best-of-3")

#: The prompt kind of the interactive protocol: a sequence of corrective clicks (sambench/inputs/clicks.py).
#: Whether a setting or a card is interactive is asked with ``Setting.interactive`` / ``ProtocolCard.interactive``.
INTERACTIVE_KIND = "clicks"
#: The prompt kind of the replay protocol: prompts read from a file (sambench/inputs/replay.py), not generated.
REPLAY_KIND = "replay"
#: Prompt kinds a protocol setting can generate (sambench/inputs/prompts.py; ``clicks``: sambench/inputs/clicks.py;
#: ``replay``: sambench/inputs/replay.py). ``gt-mask`` (video protocols only): the object's GT mask on the prompt
#: frame, the ceiling of propagation.
PROMPT_KINDS = ("gt-box", "noisy-box", "box-shift", "box-scale", "points", INTERACTIVE_KIND, REPLAY_KIND, "gt-mask")
#: File formats a replay card's ``file`` may have (docs/protocols.md "Replayed prompts"): ``auto`` decides by
#: the path (a directory: ``breps``; ``.csv``: ``rclicks``; else ``sambench``).
REPLAY_FORMATS = ("auto", "sambench", "rclicks", "breps")
#: The parameter a homogeneous protocol's ``levels`` list sets, per kind.
LEVEL_PARAM = {"gt-box": None, "noisy-box": "scale", "box-shift": "scale", "box-scale": "scale", "points": "k",
               "gt-mask": None}
#: Prompt kinds only a video protocol (``video: true``) may use.
VIDEO_ONLY_KINDS = ("gt-mask",)
#: Which frame of a track a video protocol prompts (docs/video.md "Protocols"): ``first``, the object's first
#: annotated frame where it is present; ``largest``, the annotated frame where its mask is largest (earliest on
#: ties); ``middle``, the present annotated frame nearest the middle of its present annotated frames, propagated
#: both ways.
PROMPT_FRAMES = ("first", "largest", "middle")
#: Prompt kinds whose setting is a box with noise of scale ``scale`` (0 = the GT box).
BOX_NOISE_KINDS = ("noisy-box", "box-shift", "box-scale")
#: Prompt kinds whose prompt is a box derived from the GT box (the kinds ``box_frame`` applies to).
BOX_KINDS = ("gt-box", *BOX_NOISE_KINDS)

# ------------------------------------------------------------------------------------------- clicks

#: How a click sequence starts: the first click (RITM), the GT box, or a noisy box (keyed per draw).
STARTS = ("click", "gt-box", "noisy-box")
#: Card fields of the interactive protocol (``kind: clicks``; its levels are the clicks 1..max_clicks).
CLICK_CARD_FIELDS = ("max_clicks", "start", "start_scale", "feed_logits")

# -------------------------------------------------------------------------------------- corruptions

#: RobustSAM's own degradations (its data/augment.py; sambench.inputs.robustsam): one strength each, so
#: severity 1 only; ``--corruption robustsam`` selects them all.
ROBUSTSAM = (
    "robustsam-gauss-noise", "robustsam-iso-noise", "robustsam-impulse-noise", "robustsam-compression",
    "robustsam-resampling-blur", "robustsam-motion-blur", "robustsam-zoom-blur", "robustsam-frosted-glass-blur",
    "robustsam-brightness", "robustsam-contrast", "robustsam-color-jitter", "robustsam-elastic-transform",
)
#: Every corruption sambench defines, in the registry's order: ImageNet-C's fifteen, then sambench's own
#: low light, haze and rain (docs/corruptions.md), then RobustSAM's.
CORRUPTION_NAMES = (
    "gaussian-noise", "shot-noise", "impulse-noise",
    "defocus-blur", "glass-blur", "motion-blur", "zoom-blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic-transform", "pixelate", "jpeg-compression",
    "low-light", "haze", "rain",
) + ROBUSTSAM
#: Corruptions that need a file sambench does not ship (frost: ImageNet-C's textures).
NEEDS_OUTSIDE_FILE = ("frost",)
#: What ``--corruption all`` means: every graded corruption (severities 1-5) that needs no outside file;
#: ``--corruption robustsam`` means RobustSAM's own degradations.
ALL = tuple(n for n in CORRUPTION_NAMES if n not in NEEDS_OUTSIDE_FILE and n not in ROBUSTSAM)
SEVERITIES = (1, 2, 3, 4, 5)
#: The name of level 0 of the corruption axis.
CLEAN = "none"


def corruption_name(name: str) -> str:
    """The registered name ``name`` stands for (case and ``_`` for ``-`` forgiven), or one error line."""
    key = name.strip().lower().replace("_", "-")
    if key not in CORRUPTION_NAMES:
        raise SambenchError(f"unknown corruption '{name}': choose from {', '.join(CORRUPTION_NAMES)}, all or robustsam")
    return key


def parse_spec(spec: str) -> list[tuple[str, int]]:
    """``NAME[:SEVERITIES]`` → [(name, severity), ...]; NAME may be ``all``; SEVERITIES like ``1,3`` or
    ``1-5`` (default 1-5)."""
    name, _, sev = spec.partition(":")
    if not name.strip():
        raise SambenchError(f"--corruption '{spec}': give NAME[:SEVERITIES], e.g. fog:1,3 or all")
    groups = {"all": ALL, "robustsam": ROBUSTSAM}
    names = groups.get(name.strip().lower()) or (corruption_name(name),)
    severities = parse_severities(spec, sev) if sev.strip() else None
    if severities and set(names) <= set(ROBUSTSAM) and severities != [1]:
        raise SambenchError(f"--corruption '{spec}': RobustSAM's degradations have one strength: severity 1 only")
    return [(n, s) for n in names for s in (severities or ([1] if n in ROBUSTSAM else list(SEVERITIES)))]


def parse_severities(spec: str, text: str) -> list[int]:
    """The sorted severities of the ``SEVERITIES`` part ``text`` of ``spec`` (``1,3``, ``2-5``, ...)."""
    out: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            vals = range(int(lo), int(hi) + 1) if dash else [int(lo)]
        except ValueError:
            raise SambenchError(f"--corruption '{spec}': severities must be integers 1..5 like 1,3 or 1-5") from None
        if not vals:  # 5-1 would otherwise select nothing and run no corruption at all
            raise SambenchError(f"--corruption '{spec}': the range {part.strip()} is empty: write it low-high, e.g. 1-5")
        for v in vals:
            if v not in SEVERITIES:
                raise SambenchError(f"--corruption '{spec}': severity {v} is not in 1..5 (clean is always level 0)")
            if v not in out:
                out.append(v)
    return sorted(out)


def parse_specs(specs: Iterable[str]) -> list[tuple[str, int]]:
    """Several ``--corruption`` values → the axis: (``none``, 0) first, then each (name, severity) once,
    in the registry's order."""
    wanted = {pair for spec in specs for pair in parse_spec(spec)}
    return [(CLEAN, 0)] + sorted(wanted, key=lambda p: (CORRUPTION_NAMES.index(p[0]), p[1]))
