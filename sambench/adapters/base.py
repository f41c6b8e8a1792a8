"""The adapter interface: encode an image once, decode many prompts against it.

An adapter never sees datasets or protocols — only images and prompts. The runner calls

    state = adapter.encode(image, preprocessing)        # once per image (and preprocessing mode)
    pred = adapter.predict(state, prompts, mask_selection=...)   # any number of times

and ``predict`` must keep memory bounded however many prompts it gets (chunk inside).
"""

from __future__ import annotations

import abc
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Optional, Sequence

import numpy as np

from sambench.config import MASK_SELECTIONS, PREPROCESSING_MODES  # the protocol vocabulary adapters implement
from sambench.types import Prediction, Prompt, SambenchError, did_you_mean


class UnknownOptionsError(SambenchError):
    """An adapter factory got option keys it does not know.

    Factories raise it (``where`` = the card); :func:`sambench.adapters.build_adapter` knows which keys
    came from ``--option`` and which from the card file, and blames the right one.
    """

    def __init__(self, where: str, keys, known) -> None:
        self.where, self.keys, self.known = str(where), sorted(keys), sorted(known)
        super().__init__(f"{self.where}: unknown option(s) {', '.join(self.keys)}"
                         f"{did_you_mean(self.keys[0], self.known)} (known: {', '.join(self.known) or 'none'})")


class OptionValueError(SambenchError):
    """An adapter factory got a value it refuses for option ``key``: ``problem`` says what it must be.

    Factories raise it (``where`` = the card); :func:`sambench.adapters.build_adapter` blames ``--option`` when
    the user gave the key, else the card file, as for :class:`UnknownOptionsError`.
    """

    def __init__(self, where: str, key: str, problem: str) -> None:
        self.where, self.key, self.problem = str(where), key, problem
        super().__init__(f"{self.where}: option '{key}' {problem}")


def known_options(options: Optional[dict], known, where: str) -> dict:
    """``options`` as a new dict, once every key is one of ``known`` (else :class:`UnknownOptionsError` naming
    ``where``, e.g. ``model 'grabcut'``): the check every adapter factory starts with."""
    opts = dict(options or {})
    unknown = set(opts) - set(known)
    if unknown:
        raise UnknownOptionsError(where, unknown, known)
    return opts


class Adapter(abc.ABC):
    """Base class of every model adapter.

    Subclasses set ``name`` (the model's name: its card's, or the one an object passed to
    :func:`sambench.run` reports as ``signature()["model"]``) and ``capabilities`` (the prompt forms they
    take, a subset of :data:`sambench.types.PROMPT_FORMS`), and implement :meth:`signature`,
    :meth:`encode` and :meth:`predict`. Counters ``encoder_calls`` and ``decoded_prompts`` are kept by the
    subclasses and recorded in the run manifest.
    """

    name: str = "adapter"
    capabilities: frozenset = frozenset({"box", "points", "box+points"})
    #: True for adapters whose ``predict`` also takes ``mask_inputs`` (one low-res logit map or None per
    #: prompt, as returned in ``Prediction.low_res_logits``) and ``return_logits`` — SAM's mask prompt.
    #: The interactive protocol feeds a model its previous logits only when this is True. Every torch
    #: SAM-family adapter takes them (:class:`sambench.adapters.decoding.ChunkedDecoding`).
    mask_prompts: bool = False
    #: False for adapters whose mask cannot follow corrective clicks (box-fill): the interactive protocol
    #: records their sequences as failed instead of scoring a mask that ignores the clicks.
    interactive: bool = True

    #: Set by the runner when it can score masks where they are: an adapter that computes its masks on a
    #: CUDA device may then return them there as a torch bool tensor (``Prediction.masks``) instead of
    #: copying them to the host. Adapters that ignore it return numpy arrays, as before.
    masks_on_device: bool = False

    def __init__(self) -> None:
        self.encoder_calls = 0
        self.decoded_prompts = 0

    @abc.abstractmethod
    def signature(self) -> dict:
        """Identity for caches and manifests: at least ``model``, ``adapter_version``, ``weights_sha256``
        (or None), and the options that change outputs."""

    @abc.abstractmethod
    def encode(self, image: np.ndarray, preprocessing: str = "sam") -> Any:
        """Run the expensive, prompt-independent part once for an RGB uint8 (H, W, 3) image."""

    @abc.abstractmethod
    def predict(self, state: Any, prompts: Sequence[Prompt], mask_selection: str = "single") -> Prediction:
        """Masks (bool, original resolution) and scores for every prompt, in order."""

    # ------------------------------------------------------------ optional: batched encode, cacheable state
    # Additive hooks with safe defaults: an adapter that does not override them encodes one image at a
    # time and is never cached (sambench/execution/cache.py skips it).

    def encode_batch(self, images: Sequence[np.ndarray], preprocessing: str = "sam") -> list:
        """States for several images at once, in order; must equal ``[encode(im) for im in images]``.

        Override when the encoder can run one batched forward pass (SAM family); the default loops.
        """
        return [self.encode(image, preprocessing) for image in images]

    def cache_signature(self) -> Optional[dict]:
        """What the *encoder's output* depends on (weights, variant, dtype, package versions), or None
        when states of this adapter cannot be cached (the default). Two adapters with equal cache
        signatures must produce interchangeable states (e.g. Stable-SAM shares its base SAM's)."""
        return None

    def state_to_tensors(self, state: Any) -> tuple[dict, dict]:
        """(name → torch tensor or numpy array, JSON-serialisable metadata) holding everything
        :meth:`predict` needs from ``state``. Only called when :meth:`cache_signature` is not None."""
        raise NotImplementedError(f"{type(self).__name__} does not serialise its encoded state")

    def state_from_tensors(self, tensors: dict, meta: dict) -> Any:
        """Inverse of :meth:`state_to_tensors` (tensors arrive on the CPU; move them to the device)."""
        raise NotImplementedError(f"{type(self).__name__} does not serialise its encoded state")

    def checked_prompts(self, state: Any, state_type: type, prompts: Sequence[Prompt],
                        mask_selection: str) -> list[Prompt]:
        """``prompts`` as a list, after the checks every model adapter's ``predict`` starts with: a known mask
        selection, a state that this adapter's ``encode`` returned, and prompt forms the model takes."""
        if mask_selection not in MASK_SELECTIONS:
            raise SambenchError(f"model '{self.name}': unknown mask selection '{mask_selection}' "
                                f"(known: {', '.join(MASK_SELECTIONS)})")
        if not isinstance(state, state_type):
            raise SambenchError(f"model '{self.name}': predict() needs the state returned by this adapter's encode()")
        prompts = list(prompts)
        self.check_prompts(prompts)
        return prompts

    def check_image(self, image: Any, preprocessing: Optional[str] = None) -> None:
        """Refuse, in one line, an image that is not RGB uint8 (H, W, 3) and, when given, a preprocessing mode
        that is not one of :data:`~sambench.config.vocabulary.PREPROCESSING_MODES`."""
        if preprocessing is not None and preprocessing not in PREPROCESSING_MODES:
            raise SambenchError(f"model '{self.name}': unknown preprocessing '{preprocessing}' "
                                f"(known: {', '.join(PREPROCESSING_MODES)})")
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise SambenchError(f"model '{self.name}': expected an RGB uint8 (H, W, 3) image, got {what}")

    def check_prompts(self, prompts: Sequence[Prompt]) -> None:
        for p in prompts:
            if p.form not in self.capabilities:
                raise SambenchError(f"model '{self.name}' cannot take a '{p.form}' prompt (it takes: {', '.join(sorted(self.capabilities))})")

    def counters(self) -> dict:
        return {"encoder_calls": self.encoder_calls, "decoded_prompts": self.decoded_prompts}

    def close(self) -> None:  # pragma: no cover - default no-op
        pass


def package_version(name: str) -> Optional[str]:
    """The installed version of distribution ``name`` (recorded in adapter signatures), or None."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None
