"""Loading Wan 2.1/2.2 and HunyuanVideo diffusers pipelines and running one generation.

``model_info`` reads what a model is from its model_index.json and component configs
only (a local folder written by any diffusers ``save_pretrained``, or a Hub id whose
config files are fetched alone), so frame/size rules and task checks happen before any
weight is downloaded. ``load_pipeline`` then loads it; ``generate`` runs it with a
progress bar and returns frames for ``video.write_mp4``.

``"tiny"`` is the embedded tiny model (``vidlora.tiny``): ``tiny`` picks the Wan kind for
the task; ``tiny:KIND`` picks any of ``TINY_PIPELINE_KINDS`` (e.g. ``tiny:hunyuan-t2v``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vidlora.common.hub import hf_endpoint, hub_offline
from vidlora.common.progress import progress_bar
from vidlora.errors import SourceError, VidloraError

__all__ = [
    "DEFAULT_MODELS",
    "OFFLOAD_MODES",
    "ModelInfo",
    "model_info",
    "round_frames",
    "round_size",
    "load_pipeline",
    "place_pipeline",
    "apply_offload",
    "load_image",
    "generate",
]

DEFAULT_MODELS = {
    "i2v": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "t2v": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
}
OFFLOAD_MODES = ("model", "group", "sequential")
_TASKS = ("t2v", "i2v")
_TINY_FOR_TASK = {"t2v": "wan-t2v", "i2v": "wan-i2v"}

# pipeline class -> (arch, task). Classes outside this table are refused by name.
_PIPELINES = {
    "WanPipeline": ("wan", "t2v"),
    "WanImageToVideoPipeline": ("wan", "i2v"),
    "HunyuanVideoPipeline": ("hunyuan-video", "t2v"),
    "HunyuanVideoImageToVideoPipeline": ("hunyuan-video", "i2v"),
}
# The config files model_info reads (a Hub id fetches only these, a few KB).
_CONFIG_FILES = {
    "transformer": "transformer/config.json",
    "transformer_2": "transformer_2/config.json",
    "vae": "vae/config.json",
    "scheduler": "scheduler/scheduler_config.json",
}
# Scheduler class -> the config key that holds its flow shift.
_FLOW_SHIFT_KEYS = {
    "UniPCMultistepScheduler": "flow_shift",
    "DPMSolverMultistepScheduler": "flow_shift",
    "FlowMatchEulerDiscreteScheduler": "shift",
}


@dataclass(frozen=True)
class ModelInfo:
    """What a video pipeline is and what it accepts, read from its configs.

    source: what was asked for ("tiny", a Hub id, a folder). location: the folder or Hub
    id that holds it. pipeline_class: the diffusers class in model_index.json.
    arch: "wan" | "hunyuan-video". version: "2.1" | "2.2" (Wan), "1.0" (HunyuanVideo).
    task: "t2v" | "i2v". two_experts: Wan 2.2 A14B (``transformer`` for high noise,
    ``transformer_2`` for low noise, switching at ``boundary_ratio``).
    default_fps: the rate the model was trained for. frame_step: valid frame counts are
    frame_step * k + 1 (the VAE's temporal factor). size_multiple: width and height
    must be multiples of it (VAE spatial factor x patch size). accepts_guidance_2: the
    pipeline takes ``guidance_scale_2``. flow_shift_key: the scheduler config key for
    the flow shift (None when its scheduler has none); default_flow_shift its value.
    width: the transformer's hidden size (1536 Wan 1.3B, 5120 Wan 14B, 3072 Hunyuan).
    is_tiny: the embedded tiny model. prompt_template: the Hunyuan prompt template
    with a crop_start for this model's tokenizer (None: the pipeline's default).
    default_size (w, h), default_frames, default_steps, default_guidance: settings the
    model is made for. dropped_frames: leading frames the pipeline decodes and then
    drops (HunyuanVideo I2V "latent_concat": 4, the image's own latent frame);
    ``generate`` asks for that many more so the video has the frames requested.
    """

    source: str
    location: str
    pipeline_class: str
    arch: str
    version: str
    task: str
    two_experts: bool
    boundary_ratio: float | None
    default_fps: int
    frame_step: int
    size_multiple: int
    accepts_guidance_2: bool
    flow_shift_key: str | None
    default_flow_shift: float | None
    width: int
    is_tiny: bool = False
    prompt_template: dict[str, Any] | None = None
    default_size: tuple[int, int] = (832, 480)
    default_frames: int = 81
    default_steps: int = 30
    default_guidance: float = 5.0
    transformer_names: tuple[str, ...] = ("transformer",)
    dropped_frames: int = 0
    configs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        """A short human name: "Wan 2.1 I2V (width 5120)", "HunyuanVideo T2V (width 3072)"."""
        name = "Wan " + self.version if self.arch == "wan" else "HunyuanVideo"
        experts = " A14B (two experts)" if self.two_experts else ""
        return f"{name}{experts} {self.task.upper()} (width {self.width})" + (" [tiny]" if self.is_tiny else "")


def model_info(model: str | os.PathLike | None, task: str) -> ModelInfo:
    """Detect what ``model`` is, from configs only; check it can do ``task``.

    model: None (the default model for the task, DEFAULT_MODELS), "tiny" / "tiny:KIND",
        a local diffusers folder, or a Hugging Face Hub id.
    Raises SourceError when the configs cannot be found or fetched, VidloraError when
    the model is not a supported video pipeline or cannot do ``task``.
    """
    if task not in _TASKS:
        raise VidloraError(f"task must be one of {', '.join(_TASKS)}; got {task!r}")
    source = DEFAULT_MODELS[task] if model is None else os.fspath(model)
    text = source.strip()
    if text == "tiny" or text.startswith("tiny:"):
        location, configs = _tiny_configs(text, task)
    else:
        local = Path(text).expanduser()
        if local.exists():
            location, configs = str(local), _folder_configs(local)
        elif text.count("/") == 1 and not text.startswith((".", "/", "~")):
            location, configs = text, _hub_configs(text)
        else:
            raise SourceError(
                f"model {text!r} is neither a local diffusers folder nor a Hugging Face Hub id (owner/name); "
                "use --model tiny for the embedded model or --model DIR for a local folder"
            )
    info = _describe(source, location, configs, task)
    if info.task != task:
        wanted = "image-to-video" if task == "i2v" else "text-to-video"
        example = DEFAULT_MODELS[task]
        raise VidloraError(
            f"{source} is a {info.family} model ({info.pipeline_class}); `{task}` needs {'an' if wanted[0] in 'aeiou' else 'a'} {wanted} model "
            f"(e.g. {example}, or --model tiny)"
        )
    return info


def round_frames(n: int, info: ModelInfo) -> tuple[int, str | None]:
    """The valid frame count nearest ``n`` (frame_step * k + 1) and a note saying what
    changed (None when ``n`` was valid). Ties go down, as diffusers' own rounding."""
    if not isinstance(n, int) or n < 1:
        raise VidloraError(f"frames must be a positive whole number; got {n!r}")
    step = info.frame_step
    k = (n - 1 + (step - 1) // 2) // step  # nearest k, halves rounded down
    rounded = k * step + 1
    if rounded == n:
        return n, None
    return rounded, f"frames {n} -> {rounded} ({info.family} takes {step}k+1 frames)"


def round_size(width: int, height: int, info: ModelInfo) -> tuple[int, int, str | None]:
    """The valid size nearest (width, height) (multiples of info.size_multiple, at least
    one multiple) and a note saying what changed (None when the size was valid). Ties
    go down (Wan 2.2 5B: 1280x720 -> 1280x704, its own 720p size)."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value < 1:
            raise VidloraError(f"{name} must be a positive whole number; got {value!r}")
    m = info.size_multiple
    w2 = max(m, (width + (m - 1) // 2) // m * m)
    h2 = max(m, (height + (m - 1) // 2) // m * m)
    if (w2, h2) == (width, height):
        return width, height, None
    return w2, h2, f"size {width}x{height} -> {w2}x{h2} ({info.family} needs multiples of {m})"


def load_pipeline(model: str | os.PathLike | None, task: str, device: str = "cpu", dtype: Any = None, *,
                  offload: str | None = None):
    """Load ``model`` for ``task``; returns (pipeline, ModelInfo).

    device: where it runs ("cuda", "cpu", ...). dtype: the transformers' and text
        encoders' dtype (default bfloat16 on CUDA, float32 on CPU); the Wan VAE and CLIP
        image encoder stay in float32, as the Wan releases recommend.
    offload: None (everything moved to ``device``) or one of OFFLOAD_MODES (see
        ``apply_offload``).
    vidlora.attach must run before offloading hooks exist, so the order for patched
    generation is: ``load_pipeline(model, task, "cpu")`` -> ``vidlora.attach(pipe)`` ->
    ``place_pipeline(pipe, device, offload)``.
    Weights that cannot be loaded (offline, missing files) raise SourceError naming
    what was tried.
    """
    import torch

    info = model_info(model, task)
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    pipe = _from_pretrained(info, info.location, dtype)
    place_pipeline(pipe, device, offload)
    return pipe, info


def place_pipeline(pipe, device: str, offload: str | None = None) -> None:
    """Put ``pipe`` where it runs: all of it on ``device``, or offloaded (OFFLOAD_MODES)."""
    if offload is None:
        pipe.to(device)
    else:
        apply_offload(pipe, offload, device)


def load_image(path: str | os.PathLike):
    """Open an image file as RGB, with one clear error when it is missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise VidloraError(f"image {path} does not exist" if not path.exists() else f"image {path} is not a file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VidloraError(f"image {path} cannot be read ({_first_line(exc)}); expected a PNG, JPEG or WebP file") from None


def apply_offload(pipe, mode: str, device: str = "cuda") -> None:
    """Keep the weights in CPU memory and bring them to ``device`` as they run.

    "model": one whole component at a time (diffusers' enable_model_cpu_offload); a 14B
        transformer must fit in GPU memory on its own (in FP8: ~15 GB).
    "group": one transformer block at a time, prefetched on a side CUDA stream
        (enable_group_offload, block level): near "model" speed, a fraction of its memory.
    "sequential": one layer at a time (enable_sequential_cpu_offload): least memory,
        slowest.
    Blocks are offloaded whole, so modules vidlora patched inside them move with them.
    """
    import torch

    if mode not in OFFLOAD_MODES:
        raise VidloraError(f"offload mode must be one of {', '.join(OFFLOAD_MODES)}; got {mode!r}")
    device = torch.device(device)
    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="block_level",
            num_blocks_per_group=1, use_stream=device.type == "cuda",
        )


def generate(
    pipe,
    info: ModelInfo,
    *,
    prompt: str,
    negative_prompt: str | None = None,
    image: Any = None,
    frames: int,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    guidance_2: float | None = None,
    flow_shift: float | None = None,
    seed: int = 0,
    callback: Callable[[int, int], None] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Run one generation; returns float32 frames [F, H, W, 3] in 0..1.

    frames / width / height must already be valid (``round_frames`` / ``round_size``).
    image: a PIL image (i2v only). guidance: CFG scale (Wan) or the embedded guidance
    (HunyuanVideo, which ignores negative_prompt at its default true-CFG scale of 1).
    guidance_2: Wan 2.2 A14B's low-noise expert scale. flow_shift: replaces the
    scheduler's shift for this call (distill LoRAs such as lightx2v need their own).
    seed: drawn on a CPU generator, so a seed gives the same noise on every device.
    callback(step, n_steps): called after each denoising step.
    """
    import torch

    _check_generation_args(info, prompt, image, frames, width, height, steps, guidance_2)
    kwargs: dict[str, Any] = dict(
        prompt=prompt, num_frames=frames + info.dropped_frames, width=width, height=height, num_inference_steps=steps,
        guidance_scale=float(guidance), generator=torch.Generator("cpu").manual_seed(int(seed)), output_type="np",
    )
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if info.task == "i2v":
        kwargs["image"] = image.convert("RGB") if hasattr(image, "convert") else image
    if guidance_2 is not None:
        kwargs["guidance_scale_2"] = float(guidance_2)
    if info.prompt_template is not None:
        kwargs["prompt_template"] = info.prompt_template

    original_scheduler = pipe.scheduler
    if flow_shift is not None:
        pipe.scheduler = _scheduler_with_shift(pipe.scheduler, info, flow_shift)
    try:
        with progress_bar("denoising", steps, enabled=progress) as advance:
            def on_step_end(_pipe, step, _timestep, tensors):
                advance()
                if callback is not None:
                    callback(step, steps)
                return tensors

            kwargs["callback_on_step_end"] = on_step_end
            pipe.set_progress_bar_config(disable=True)  # ours replaces diffusers' tqdm bar
            output = pipe(**kwargs)
    finally:
        pipe.scheduler = original_scheduler
    video = np.asarray(output.frames[0], dtype=np.float32)
    if video.shape != (frames, height, width, 3):
        raise VidloraError(
            f"{info.pipeline_class} returned frames of shape {video.shape}; expected {(frames, height, width, 3)}"
        )
    return video


# ---------------------------------------------------------------------------- detection


def _describe(source: str, location: str, configs: dict[str, Any], wanted_task: str) -> ModelInfo:
    index = configs["model_index"]
    cls = index.get("_class_name")
    if cls not in _PIPELINES:
        supported = ", ".join(sorted(_PIPELINES))
        raise VidloraError(f"{source} is a {cls or 'non-diffusers'} pipeline; vidlora runs {supported}")
    if cls == "WanPipeline" and index.get("expand_timesteps") and wanted_task == "i2v":
        # Wan 2.2 TI2V 5B ships as a WanPipeline; diffusers runs its image-to-video mode
        # by loading the same folder into WanImageToVideoPipeline.
        cls = "WanImageToVideoPipeline"
    arch, task = _PIPELINES[cls]
    transformer = configs.get("transformer") or configs.get("transformer_2")
    if not transformer:
        raise SourceError(f"{source}: model_index.json lists no transformer config ({location})")
    vae = configs.get("vae") or {}
    scheduler = configs.get("scheduler") or {}
    marker = configs.get("tiny") or {}
    width = int(transformer.get("num_attention_heads", 0)) * int(transformer.get("attention_head_dim", 0))
    shift_key = _FLOW_SHIFT_KEYS.get(scheduler.get("_class_name", ""))
    shift = scheduler.get(shift_key) if shift_key else None
    common = dict(
        source=source, location=location, pipeline_class=cls, arch=arch, task=task, width=width,
        flow_shift_key=shift_key, default_flow_shift=float(shift) if shift is not None else None,
        is_tiny=bool(marker), prompt_template=marker.get("prompt_template"), configs=configs,
    )
    if arch == "wan":
        return _describe_wan(index, transformer, vae, common)
    return _describe_hunyuan(transformer, vae, common)


def _describe_wan(index: dict[str, Any], transformer: dict[str, Any], vae: dict[str, Any], common: dict[str, Any]) -> ModelInfo:
    patch = transformer.get("patch_size", [1, 2, 2])
    # AutoencoderKLWan's defaults (x8 spatial, x4 temporal) apply to configs saved
    # before the keys existed, as when diffusers loads them.
    spatial = int(vae.get("scale_factor_spatial") or 8)
    temporal = int(vae.get("scale_factor_temporal") or 4)
    boundary = index.get("boundary_ratio")
    two_experts = boundary is not None and _has_component(index, "transformer_2")
    expand = bool(index.get("expand_timesteps"))
    # Wan 2.2: the A14B pair, or the 5B TI2V (timestep per token, 48-channel VAE).
    is_22 = two_experts or expand or int(vae.get("z_dim", 16)) == 48
    tiny = common["is_tiny"]
    size = (64, 64) if tiny else ((1280, 704) if expand else (832, 480))
    return ModelInfo(
        **common, version="2.2" if is_22 else "2.1", two_experts=two_experts,
        boundary_ratio=float(boundary) if boundary is not None else None,
        default_fps=24 if expand else 16,  # Wan 2.2 5B is made for 24 fps, the others 16
        frame_step=temporal, size_multiple=spatial * int(patch[1]), accepts_guidance_2=two_experts,
        default_size=size, default_frames=9 if tiny else (121 if expand else 81), default_steps=4 if tiny else 30,
        default_guidance=5.0 if not two_experts else 4.0,
        transformer_names=("transformer", "transformer_2") if two_experts else ("transformer",),
    )


def _describe_hunyuan(transformer: dict[str, Any], vae: dict[str, Any], common: dict[str, Any]) -> ModelInfo:
    spatial = int(vae.get("spatial_compression_ratio") or 8)
    temporal = int(vae.get("temporal_compression_ratio") or 4)
    patch = int(transformer.get("patch_size", 2))
    tiny = common["is_tiny"]
    i2v = common["task"] == "i2v"
    return ModelInfo(
        **common, version="1.0", two_experts=False, boundary_ratio=None, default_fps=24,
        frame_step=temporal, size_multiple=spatial * patch, accepts_guidance_2=False,
        default_size=(64, 64) if tiny else (960, 544), default_frames=9 if tiny else 129,
        # the I2V release runs without embedded guidance (diffusers' default 1.0)
        default_steps=4 if tiny else 30, default_guidance=1.0 if i2v else 6.0,
        dropped_frames=temporal if transformer.get("image_condition_type") == "latent_concat" else 0,
    )


def _has_component(index: dict[str, Any], name: str) -> bool:
    entry = index.get(name)
    return isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] is not None and entry[1] is not None


def _tiny_kind(text: str, task: str) -> str:
    from .tiny import TINY_PIPELINE_KINDS

    if text == "tiny":
        return _TINY_FOR_TASK[task]
    kind = text.split(":", 1)[1]
    if kind not in TINY_PIPELINE_KINDS:
        raise VidloraError(f"unknown tiny model {text!r}; expected tiny or tiny:KIND with KIND one of {', '.join(TINY_PIPELINE_KINDS)}")
    return kind


def _tiny_configs(text: str, task: str) -> tuple[str, dict[str, Any]]:
    from .tiny import tiny_pipeline_dir

    folder = tiny_pipeline_dir(_tiny_kind(text, task))
    return str(folder), _folder_configs(folder)


def _folder_configs(folder: Path) -> dict[str, Any]:
    from .tiny import TINY_MARKER_FILE

    if not folder.is_dir():
        raise SourceError(f"model {folder} is a file; --model takes a diffusers folder (with model_index.json) or a Hub id")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise SourceError(f"{folder} is not a diffusers pipeline folder (no model_index.json); save one with pipe.save_pretrained(DIR)")
    configs: dict[str, Any] = {"model_index": _read_json(index_path)}
    for name, rel in _CONFIG_FILES.items():
        if _has_component(configs["model_index"], name) and (folder / rel).is_file():
            configs[name] = _read_json(folder / rel)
    marker = folder / TINY_MARKER_FILE
    if marker.is_file():
        configs["tiny"] = _read_json(marker)
    return configs


def _hub_configs(repo_id: str) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    endpoint = hf_endpoint()
    offline = hub_offline(endpoint)

    def fetch(rel: str) -> dict[str, Any]:
        try:
            return _read_json(Path(hf_hub_download(repo_id, rel, endpoint=endpoint, local_files_only=offline)))
        except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
            reason = "offline and not in the Hugging Face cache" if offline else f"{type(exc).__name__}: {_first_line(exc)}"
            raise SourceError(
                f"cannot get {rel} of {repo_id} from {endpoint} ({reason}); "
                "use --model tiny for the embedded model or --model DIR for a local diffusers folder"
            ) from None

    configs: dict[str, Any] = {"model_index": fetch("model_index.json")}
    for name, rel in _CONFIG_FILES.items():
        if _has_component(configs["model_index"], name):
            configs[name] = fetch(rel)
    return configs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise SourceError(f"{path} does not hold a JSON object")
    return value


# ---------------------------------------------------------------------------- loading / running


def _from_pretrained(info: ModelInfo, location: str, dtype: Any):
    import diffusers
    import torch

    cls = getattr(diffusers, info.pipeline_class)
    dtypes: Any = dtype
    if info.arch == "wan" and dtype != torch.float32:
        # Wan's VAE and CLIP lose visible detail in half precision (Wan release notes).
        dtypes = {"default": dtype, "vae": torch.float32, "image_encoder": torch.float32}
    kwargs: dict[str, Any] = {}
    if not Path(location).exists():
        kwargs["local_files_only"] = hub_offline()
    try:
        return cls.from_pretrained(location, **_dtype_kwarg(dtypes), **kwargs)
    except (OSError, ValueError, EnvironmentError, KeyError) as exc:
        offline = " (offline: only the Hugging Face cache was searched)" if kwargs.get("local_files_only") else ""
        raise SourceError(
            f"cannot load the weights of {info.source} from {location}{offline}: {_first_line(exc)}; "
            "use --model tiny for the embedded model or --model DIR for a local diffusers folder"
        ) from None


def _dtype_kwarg(dtypes: Any) -> dict[str, Any]:
    # diffusers renamed torch_dtype= to dtype= (the old name warns from 0.36 on); the
    # helper that maps the old name onto the new one marks versions with the rename.
    try:
        from diffusers.utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtypes}
    return {"dtype": dtypes}


def _check_generation_args(info, prompt, image, frames, width, height, steps, guidance_2) -> None:
    if not isinstance(prompt, str):
        raise VidloraError(f"prompt must be text; got {type(prompt).__name__}")
    if info.task == "i2v" and image is None:
        raise VidloraError(f"{info.family} is an image-to-video model: give an image")
    if info.task == "t2v" and image is not None:
        raise VidloraError(f"{info.family} is a text-to-video model: it takes no image")
    if round_frames(frames, info)[1] is not None:
        raise VidloraError(f"{frames} frames: {info.family} takes {info.frame_step}k+1 frames (see round_frames)")
    if round_size(width, height, info)[2] is not None:
        raise VidloraError(f"size {width}x{height}: {info.family} needs multiples of {info.size_multiple} (see round_size)")
    if not isinstance(steps, int) or steps < 1:
        raise VidloraError(f"steps must be a positive whole number; got {steps!r}")
    if guidance_2 is not None and not info.accepts_guidance_2:
        raise VidloraError(f"guidance_2 applies to Wan 2.2 A14B (two experts); {info.family} has one transformer")


def _scheduler_with_shift(scheduler, info: ModelInfo, flow_shift: float):
    key = _FLOW_SHIFT_KEYS.get(type(scheduler).__name__)
    if key is None:
        raise VidloraError(f"flow_shift: the {type(scheduler).__name__} scheduler of {info.family} has no flow shift")
    if key == "flow_shift" and not scheduler.config.get("use_flow_sigmas", False):
        raise VidloraError(f"flow_shift: the {type(scheduler).__name__} scheduler of {info.family} does not use flow sigmas")
    if key == "shift" and scheduler.config.get("use_dynamic_shifting", False):
        raise VidloraError(f"flow_shift: the scheduler of {info.family} computes its shift per resolution (dynamic shifting)")
    return type(scheduler).from_config(scheduler.config, **{key: float(flow_shift)})


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
