"""The second pipeline: fit a Stable-SAM plug-in on the frozen weights of a SAM, HQ-SAM or SAM 2.1 base.

A benchmark run (``sambench run``) only evaluates; ``sambench train stable-sam`` trains the one model
component sambench learns itself, the Stable-SAM plug-in (:mod:`sambench.adapters.stable_sam`), whose
file a Stable-SAM card then runs with. The pipeline reads datasets and draws prompts as a run does, but
never writes to the store.

* :mod:`~sambench.training.data` — the recipe's configuration and what one step is fed (data,
  augmentation, prompts, targets);
* :mod:`~sambench.training.train` — the loss, the loop, its log and its resumable state;
* :mod:`~sambench.training.decode` — the frozen base's encoder and decoder called directly, batched per step.
"""
