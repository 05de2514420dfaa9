"""The bottom layer: small helpers every layer above may use. Imports nothing of vidlora
but ``vidlora.errors``.

- ``text``: ``index_ranges`` and ``format_bytes`` (the one byte formatter, binary units).
- ``progress``: ``progress_bar``, the one rich progress bar (downloads, denoising steps).
- ``hub``: ``hf_endpoint``, ``is_reachable``, ``hub_offline``: the one Hugging Face probe.
- ``cache_dir``: ``vidlora_cache_dir``, the one rule for where vidlora caches files.
- ``lazy``: ``lazy_exports``, the packages' PEP 562 lazy public names.
- ``finite``: ``sums_finite``, the one-pass NaN/Inf test over many tensors.
"""
