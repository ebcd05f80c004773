"""Models: slot attention and its parts, per frame (``dinosaur.py``), and the slot model through time
(``slot_model.py``: ``SlotModel.scan``, the one loop over time of training and inference).

Per-frame parts: ``slot_attention.py``, ``pos_embed.py``, ``decoders.py``, ``background.py`` (CLS-attention
background/foreground); through time: ``predictor.py`` (SAVi's slot predictor); lock-on's initial slots from
masks: ``conditioning.py`` and ``regions.py`` (k-means regions and their course under label propagation).
"""
