"""SAM (Meta's ``segment_anything``) and HQ-SAM (SysCV's ``segment_anything_hq``): one family, one folder.

* :mod:`~sambench.adapters.sam.adapter` — the adapters (encode once, decode many), their options and factories;
* :mod:`~sambench.adapters.sam.nets` — the official networks' variants, built without weights, and which
  variant a state dict holds;
* :mod:`~sambench.adapters.sam.weights` — checking a SAM-1 state dict against its card and loading it strictly
  (the family-independent half is :mod:`sambench.adapters.weights`).
"""
