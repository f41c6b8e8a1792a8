"""WHAT the model is shown: pure, keyed functions of a card and an object — no model, no store.

* :mod:`~sambench.inputs.prompts` — box and point prompts of a protocol setting, keyed per (level, draw, object);
* :mod:`~sambench.inputs.clicks` — the corrective-click simulator and the click sequence of the interactive protocol;
* :mod:`~sambench.inputs.corruptions` — the image corruptions (registry and keys), with their pixel functions in
  :mod:`~sambench.inputs.imagenet_c` and :mod:`~sambench.inputs.weather`.

The words these implement (prompt kinds, click starts, corruption names) are declared in
:mod:`sambench.config.vocabulary`, one stage down, where the cards are checked against them.
"""
