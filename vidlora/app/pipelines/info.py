"""What a video pipeline is and what it accepts (``ModelInfo``), read from its configs
alone: frame/size rules and task checks happen before any weight is downloaded, and
before torch is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from vidlora.errors import SourceError, VidloraError

from .configs import has_component, read_configs
from .family_info import FAMILY_PIPELINES, family_settings

__all__ = ["DEFAULT_MODELS", "FLOW_SHIFT_KEYS", "ModelInfo", "model_info"]

DEFAULT_MODELS = {
    "i2v": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
    "t2v": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "v2v": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",  # its transformer, in WanVideoToVideoPipeline
}
# "animate": Wan 2.2 Animate's pose + face driven generation, from the Python API only
_TASKS = ("t2v", "i2v", "v2v", "animate")

# pipeline class -> (arch, task). Classes outside this table are refused by name.
_PIPELINES = {
    "WanPipeline": ("wan", "t2v"),
    "WanImageToVideoPipeline": ("wan", "i2v"),
    "HunyuanVideoPipeline": ("hunyuan-video", "t2v"),
    "HunyuanVideoImageToVideoPipeline": ("hunyuan-video", "i2v"),
}
# Scheduler class -> the config key that holds its flow shift.
FLOW_SHIFT_KEYS = {
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
    model is made for. label: the family ("Wan", "Wan VACE", "SkyReels V2", "FramePack",
    "HunyuanVideo 1.5", ...); tasks: every task the pipeline class runs (VACE: t2v, i2v,
    v2v). trims_frames: the pipeline may return more frames than asked (FramePack's
    sections), generate keeps the first ones. guidance_by_guider: CFG goes through the
    pipeline's guider component (HunyuanVideo 1.5). crop_start: the tiny HunyuanVideo
    1.5's count of system-prompt tokens its pipeline drops (its marker says). dropped_frames: leading frames the pipeline decodes and then
    drops (HunyuanVideo I2V "latent_concat": 4, the image's own latent frame);
    ``generate`` asks for that many more so the video has the frames requested.
    vae_spatial / vae_temporal: the VAE's compression factors; patch (t, h, w): the
    transformer's patch size; rope_max_seq_len: positions per axis of Wan's rotary table
    (None: no fixed table) -- together they give the largest size and frame count the
    transformer can take (``checks.check_model_limits``).
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
    vae_spatial: int = 8
    vae_temporal: int = 4
    patch: tuple[int, int, int] = (1, 2, 2)
    rope_max_seq_len: int | None = None
    label: str = ""
    tasks: tuple[str, ...] = ()
    trims_frames: bool = False
    guidance_by_guider: bool = False
    crop_start: int | None = None
    configs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        """A short human name: "Wan 2.1 I2V (width 5120)", "HunyuanVideo T2V (width 3072)"."""
        base = "Wan " + self.version if self.arch == "wan" else "HunyuanVideo"
        name = base if self.label in ("", "Wan", "HunyuanVideo") else self.label
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
    location, configs = read_configs(source.strip(), task)
    info = _describe(source, location, configs, task)
    if task == "animate" and info.task != "animate":
        raise VidloraError(f"{source} is a {info.family} model ({info.pipeline_class}); animate needs Wan 2.2 Animate")
    if info.task == "animate" and task != "animate":
        raise VidloraError(
            f"{source} is Wan 2.2 Animate ({info.pipeline_class}): it animates a character image from pose and face "
            "videos, which a one-line command cannot carry; run it from Python (README: Wan 2.2 Animate)"
        )
    if info.task != task:
        wanted = "image-to-video" if task == "i2v" else "text-to-video"
        example = DEFAULT_MODELS[task]
        raise VidloraError(
            f"{source} is a {info.family} model ({info.pipeline_class}); `{task}` needs {'an' if wanted[0] in 'aeiou' else 'a'} {wanted} model "
            f"(e.g. {example}, or --model tiny)"
        )
    return info


def _describe(source: str, location: str, configs: dict[str, Any], wanted_task: str) -> ModelInfo:
    index = configs["model_index"]
    cls = index.get("_class_name")
    if cls not in _PIPELINES and cls not in FAMILY_PIPELINES:
        supported = ", ".join(sorted((*_PIPELINES, *FAMILY_PIPELINES)))
        if cls == "WanAnimate2Pipeline":
            raise VidloraError(f"{source} is Wan2.2-Animate-2 ({cls}), which vidlora does not support yet: it has "
                               "a naming of its own and no LoRA ecosystem")  # fmt: skip
        raise VidloraError(f"{source} is a {cls or 'non-diffusers'} pipeline; vidlora runs {supported}")
    if cls == "WanPipeline" and index.get("expand_timesteps") and wanted_task == "i2v":
        # Wan 2.2 TI2V 5B ships as a WanPipeline; diffusers runs its image-to-video mode
        # by loading the same folder into WanImageToVideoPipeline.
        cls = "WanImageToVideoPipeline"
    if cls == "WanPipeline" and wanted_task == "v2v":
        # video-to-video is the T2V transformer in WanVideoToVideoPipeline (diffusers' own recipe)
        cls = "WanVideoToVideoPipeline"
    if cls in FAMILY_PIPELINES:
        arch, tasks, label = FAMILY_PIPELINES[cls]
        task = wanted_task if wanted_task in tasks else tasks[0]
    else:
        arch, task = _PIPELINES[cls]
        tasks, label = (task,), ("Wan" if arch == "wan" else "HunyuanVideo")
    transformer = configs.get("transformer") or configs.get("transformer_2")
    if not transformer:
        raise SourceError(f"{source}: model_index.json lists no transformer config ({location})")
    vae = configs.get("vae") or {}
    scheduler = configs.get("scheduler") or {}
    marker = configs.get("tiny") or {}
    width = int(transformer.get("num_attention_heads", 0)) * int(transformer.get("attention_head_dim", 0))
    shift_key = FLOW_SHIFT_KEYS.get(scheduler.get("_class_name", ""))
    shift = scheduler.get(shift_key) if shift_key else None
    common = dict(
        source=source, location=location, pipeline_class=cls, arch=arch, task=task, width=width,
        flow_shift_key=shift_key, default_flow_shift=float(shift) if shift is not None else None,
        is_tiny=bool(marker), prompt_template=marker.get("prompt_template"), configs=configs, label=label,
        tasks=tasks, crop_start=marker.get("crop_start"),
    )
    if arch == "wan":
        info = _describe_wan(index, transformer, vae, common)
    else:
        info = _describe_hunyuan(transformer, vae, common)
    extra = family_settings(cls, transformer, info.is_tiny)
    return replace(info, **extra) if extra else info


def _describe_wan(index: dict[str, Any], transformer: dict[str, Any], vae: dict[str, Any], common: dict[str, Any]) -> ModelInfo:
    patch = tuple(int(p) for p in transformer.get("patch_size", [1, 2, 2]))
    # AutoencoderKLWan's defaults (x8 spatial, x4 temporal) apply to configs saved
    # before the keys existed, as when diffusers loads them.
    spatial = int(vae.get("scale_factor_spatial") or 8)
    temporal = int(vae.get("scale_factor_temporal") or 4)
    boundary = index.get("boundary_ratio")
    two_experts = boundary is not None and has_component(index, "transformer_2")
    expand = bool(index.get("expand_timesteps"))
    # Wan 2.2: the A14B pair, or the 5B TI2V (timestep per token, 48-channel VAE).
    is_22 = two_experts or expand or int(vae.get("z_dim", 16)) == 48
    tiny = common["is_tiny"]
    size = (64, 64) if tiny else ((1280, 704) if expand else (832, 480))
    return ModelInfo(
        **common, version="2.2" if is_22 else "2.1", two_experts=two_experts,
        boundary_ratio=float(boundary) if boundary is not None else None,
        default_fps=24 if expand else 16,  # Wan 2.2 5B is made for 24 fps, the others 16
        frame_step=temporal, size_multiple=spatial * patch[1], accepts_guidance_2=two_experts,
        default_size=size, default_frames=9 if tiny else (121 if expand else 81), default_steps=4 if tiny else 30,
        default_guidance=5.0 if not two_experts else 4.0,
        transformer_names=("transformer", "transformer_2") if two_experts else ("transformer",),
        vae_spatial=spatial, vae_temporal=temporal, patch=patch,
        # WanTransformer3DModel's default table (1024 positions per axis) when unsaid
        rope_max_seq_len=int(transformer.get("rope_max_seq_len") or 1024),
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
        vae_spatial=spatial, vae_temporal=temporal,
        patch=(int(transformer.get("patch_size_t", 1)), patch, patch),
        rope_max_seq_len=None,  # HunyuanVideo computes its rotary table for each grid
    )
