"""Models: the per-frame parts of a slot model (``frame.py``: ``FrameModel``) and the slot model through time
(``slot_model.py``: ``SlotModel``, which holds a ``FrameModel``; its one ``forward`` serves training and every
inference path, and ``scan`` is the one loop over frames).

Per-frame parts: ``slot_attention.py``, ``pos_embed.py``, ``decoders.py``, ``background.py`` (CLS-attention
background/foreground); through time: ``predictor.py`` (SAVi's slot predictor); lock-on's initial slots from
masks: ``conditioning.py`` and ``regions.py`` (k-means regions and their course under label propagation);
``losses.py`` (pure functions); ``options.py`` (``ModelConfig``) and ``factory.py`` (``build_model``); ``keys.py``
(the versions of a checkpoint's keys and the mappings between them).
"""
