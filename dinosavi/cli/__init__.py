"""The front door: the only code that sees a config.

Hydra composes ``conf/`` against the schema (``config.py``); ``checks.py`` checks every value by key and the
files a mode reads, before torch is imported; ``dispatch.py`` runs the mode named in the one table of modes
(``config.MODES``): ``modes.py`` (train, eval, cache, propagate, score, segment, convert, export), ``demo.py``
and ``help.py``; ``build.py`` turns config sections into objects. Nothing outside this package imports it.
"""
