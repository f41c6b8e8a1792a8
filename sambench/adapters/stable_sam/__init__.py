"""Stable-SAM (Fan et al. 2023): an open implementation of its DSP and DRP plug-ins, their injection into an
official SAM / HQ-SAM mask decoder, and its robust training. See docs/stable-sam.md.

* :mod:`sambench.adapters.stable_sam.modules` — :class:`PluginConfig`, :class:`StableSamPlugin` (DSP + DRP).
* :mod:`sambench.adapters.stable_sam.inject` — :func:`inject_plugin` (forward hooks on decoder layer 2).
* :mod:`sambench.adapters.stable_sam.plugin_io` — the plug-in file and the base-model signature.
* :mod:`sambench.training.train` — :func:`train_stable_sam` and the ``sambench train stable-sam`` command.
* The evaluation adapter is :mod:`sambench.adapters.stable_sam.adapter`.
"""

from sambench.adapters.stable_sam.inject import PluginInjection, attention_probs, inject_plugin
from sambench.adapters.stable_sam.modules import PluginConfig, StableSamPlugin, count_parameters
from sambench.adapters.stable_sam.plugin_io import BaseSignature, load_plugin_file, save_plugin_file

__all__ = ["PluginConfig", "StableSamPlugin", "count_parameters", "PluginInjection", "attention_probs",
           "inject_plugin", "BaseSignature", "load_plugin_file", "save_plugin_file"]
