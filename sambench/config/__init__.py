"""WHAT to run: YAML cards read into frozen dataclasses (no numpy, no torch), the lowest stage above the ground.

* :mod:`~sambench.config.lookup` — where cards are found and how their YAML is read (cached);
* :mod:`~sambench.config.models` — model cards, their checkpoint spec, family names and ``hf:`` names;
* :mod:`~sambench.config.protocols` — protocol cards, their settings (levels), click settings, overrides;
* :mod:`~sambench.config.vocabulary` — the words cards use (prompt kinds, modes, click starts, corruption
  names) and the ``--corruption`` grammar, which the stages above implement and read from here.

The public names of the four modules are re-exported here: ``from sambench.config import ModelCard``.
"""

from sambench.config.lookup import REPO_ROOT, card_dirs, list_cards, read_yaml
from sambench.config.models import (FAMILY_DEFAULTS, HF_PREFIX, MODEL_FIELDS, CheckpointSpec, ModelCard, hf_card,
                                    load_model_card, parse_model_card, resolve_model_name)
from sambench.config.protocols import (PROTOCOL_FIELDS, SETTING_FIELDS, ClickSettings, ProtocolCard, Setting, level_text,
                                       load_protocol_card, make_setting, parse_click_settings, parse_protocol_card,
                                       with_overrides)
from sambench.config.vocabulary import (BOX_FRAMES, BOX_KINDS, BOX_NOISE_KINDS, CLICK_CARD_FIELDS, INTERACTIVE_KIND,
                                        LEVEL_PARAM, MASK_SELECTIONS, PREPROCESSING_MODES, PROMPT_KINDS)

__all__ = ["BOX_FRAMES", "BOX_KINDS", "BOX_NOISE_KINDS", "CLICK_CARD_FIELDS", "FAMILY_DEFAULTS", "HF_PREFIX",
           "INTERACTIVE_KIND", "LEVEL_PARAM", "MASK_SELECTIONS", "MODEL_FIELDS", "PREPROCESSING_MODES", "PROMPT_KINDS",
           "PROTOCOL_FIELDS", "REPO_ROOT", "SETTING_FIELDS", "CheckpointSpec", "ClickSettings", "ModelCard",
           "ProtocolCard", "Setting", "card_dirs", "hf_card", "level_text", "list_cards", "load_model_card",
           "load_protocol_card", "make_setting", "parse_click_settings", "parse_model_card", "parse_protocol_card",
           "read_yaml", "resolve_model_name", "with_overrides"]
