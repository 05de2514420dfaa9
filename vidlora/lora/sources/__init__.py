"""A LoRA reference -> a local, verified .safetensors file (:func:`resolve_source`).

Accepted references, tried in this order (``resolve.py``):

- ``civitai:MODEL@VERSION`` (or ``civitai:MODEL`` for its newest version), or a civitai.com
  model page URL: the version's file list comes from
  ``$VIDLORA_CIVITAI_API/api/v1/model-versions/VERSION`` (default base
  ``https://civitai.com``); the SafeTensor file is downloaded with the token in
  ``CIVITAI_TOKEN`` and checked against the sha256 Civitai lists for it (``civitai.py``).
- ``http://`` / ``https://`` URLs (``url.py``).
- an existing local path (``local.py``).
- a file of that name in the LoRA folders (``--lora-dir``, ``VIDLORA_LORA_DIRS``;
  :mod:`vidlora.lora.lora_dirs`); a name that is also a Hub id is an error listing both.
- a Hugging Face Hub ``owner/repo`` (its single .safetensors file) or
  ``owner/repo/path/file.safetensors``, through huggingface_hub and its cache, with
  ``HF_TOKEN`` and ``HF_ENDPOINT`` read when the call is made (``hub.py``).

Civitai and URL downloads share one downloader (``download.py``): streamed into the
vidlora cache (``cache.py``) with a progress bar, written to ``download.part`` and renamed
only when complete and verified; an interrupted transfer is resumed with an HTTP Range
request (or restarted when the server ignores Range), and a half file is never used.

Whatever the source, the bytes must be a safetensors file (the one validator,
:mod:`vidlora.lora.safetensors_check`, through ``verify.py``): a pickle or a zip
(torch.save) served under a .safetensors name raises ``UnsafeFileError`` and is deleted,
never unpickled; an HTML page (a login wall) or a truncated file raises ``SourceError``.

The CLI's ``SOURCE[:W]`` is split by :func:`parse_lora_spec` (``spec.py``). The cache is
``$VIDLORA_CACHE``, else ``$XDG_CACHE_HOME/vidlora``, else ``~/.cache/vidlora``
(:func:`vidlora.common.cache_dir.vidlora_cache_dir`, re-exported here).
"""

from vidlora.common.cache_dir import vidlora_cache_dir

from .resolve import resolve_source
from .resolved_source import ResolvedSource
from .spec import parse_lora_spec

__all__ = ["ResolvedSource", "resolve_source", "parse_lora_spec", "vidlora_cache_dir"]
