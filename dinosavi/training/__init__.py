"""Training and its files: the loop (``loop.py``) and its options (``options.py``), torchrun
(``distributed.py``), safetensors checkpoints (``checkpoint.py``), shareable model folders and ``hf://`` names
(``hub.py``), and the one reader of every kind of checkpoint (``loading.py``, which also takes an original
DINOSAVi ``.ckpt`` through :mod:`dinosavi.original`).
"""
