"""The app layer (top of vidlora): what a user runs on top of the runtime.

- pipelines/: Wan / HunyuanVideo diffusers pipelines: what a model is (configs only),
  loading, placement/offload, one generation, argument rules
- tiny/: the embedded tiny models (test fixtures, ``--model tiny``, the demo's assets)
- cli/: the ``vidlora`` command line
- video: MP4 writing and reading; fp8_checkpoints: ComfyUI/kijai FP8 Wan files;
  inspect_report / model_configs: ``vidlora inspect``'s report and model configs
"""
