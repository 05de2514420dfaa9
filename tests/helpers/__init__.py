"""Test helpers, one concern per module, imported as ``helpers.X`` (tests/ is on sys.path:
pytest puts a conftest's folder there).

- writers: independent writers of every LoRA key scheme (ground truth -> .safetensors)
- merged: the independent merged-weights reference
- models: Linear paths, random canonical LoRAs, running a model, state snapshots
- format_cases: tiny models and per-scheme truth specs for the reader tests
- metrics: SQNR
- http_server: a loopback HTTP server with scripted routes
- paths: the repository root
"""
