"""The adapter interface: encode an image once, decode many prompts against it.

An adapter never sees datasets or protocols — only images and prompts. The runner calls

    state = adapter.encode(image, preprocessing)        # once per image (and preprocessing mode)
    pred = adapter.predict(state, prompts, mask_selection=...)   # any number of times

and ``predict`` must keep memory bounded however many prompts it gets (chunk inside).
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np

from sambench.cards import MASK_SELECTIONS, PREPROCESSING_MODES  # the protocol vocabulary adapters implement
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


class Adapter(abc.ABC):
    """Base class of every model adapter.

    Subclasses set ``name`` and ``capabilities`` (the prompt forms they take, a subset of
    :data:`sambench.types.PROMPT_FORMS`) and implement :meth:`encode` and :meth:`predict`. Counters ``encoder_calls`` and ``decoded_prompts``
    are kept by the base class helpers and recorded in the run manifest.
    """

    name: str = "adapter"
    capabilities: frozenset = frozenset({"box", "points", "box+points"})
    #: True for adapters whose ``predict`` also takes ``mask_inputs`` (one low-res logit map or None per
    #: prompt, as returned in ``Prediction.low_res_logits``) and ``return_logits`` — SAM's mask prompt.
    #: The interactive protocol feeds a model its previous logits only when this is True.
    mask_prompts: bool = False
    #: False for adapters whose mask cannot follow corrective clicks (box-fill): the interactive protocol
    #: records their sequences as failed instead of scoring a mask that ignores the clicks.
    interactive: bool = True

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

    def check_prompts(self, prompts: Sequence[Prompt]) -> None:
        for p in prompts:
            if p.form not in self.capabilities:
                raise SambenchError(f"model '{self.name}' cannot take a '{p.form}' prompt (it takes: {', '.join(sorted(self.capabilities))})")

    def counters(self) -> dict:
        return {"encoder_calls": self.encoder_calls, "decoded_prompts": self.decoded_prompts}

    def close(self) -> None:  # pragma: no cover - default no-op
        pass
