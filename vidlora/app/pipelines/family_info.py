"""The derived families' pipelines, as ``model_info`` sees them: which diffusers pipeline
classes run which tasks, and the settings each family is made for. Configs only, no torch.

    class                                         family              tasks
    WanVideoToVideoPipeline                       Wan                 v2v (also any WanPipeline folder)
    WanVACEPipeline                               Wan VACE            t2v, i2v, v2v (two experts: Wan2.2-VACE-Fun-A14B)
    SkyReelsV2Pipeline / ImageToVideoPipeline     SkyReels V2         t2v / i2v
    SkyReelsV2DiffusionForcing*Pipeline           SkyReels V2 DF      t2v / i2v / v2v
    WanAnimatePipeline                            Wan 2.2 Animate     animate (Python API: pose and face videos)
    HunyuanVideoFramepackPipeline                 FramePack           i2v (optionally a last image)
    HunyuanVideo15Pipeline / ImageToVideoPipeline HunyuanVideo 1.5    t2v / i2v
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAMILY_PIPELINES", "family_settings"]

# pipeline class -> (base arch, tasks, family label)
FAMILY_PIPELINES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "WanVideoToVideoPipeline": ("wan", ("v2v",), "Wan"),
    "WanVACEPipeline": ("wan", ("t2v", "i2v", "v2v"), "Wan VACE"),
    "SkyReelsV2Pipeline": ("wan", ("t2v",), "SkyReels V2"),
    "SkyReelsV2ImageToVideoPipeline": ("wan", ("i2v",), "SkyReels V2"),
    "SkyReelsV2DiffusionForcingPipeline": ("wan", ("t2v",), "SkyReels V2 DF"),
    "SkyReelsV2DiffusionForcingImageToVideoPipeline": ("wan", ("i2v",), "SkyReels V2 DF"),
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": ("wan", ("v2v",), "SkyReels V2 DF"),
    "WanAnimatePipeline": ("wan", ("animate",), "Wan 2.2 Animate"),
    "HunyuanVideoFramepackPipeline": ("hunyuan-video", ("i2v",), "FramePack"),
    "HunyuanVideo15Pipeline": ("hunyuan-video-1.5", ("t2v",), "HunyuanVideo 1.5"),
    "HunyuanVideo15ImageToVideoPipeline": ("hunyuan-video-1.5", ("i2v",), "HunyuanVideo 1.5"),
}


def family_settings(cls: str, transformer: dict[str, Any], tiny: bool) -> dict[str, Any]:
    """The ModelInfo fields a family sets differently from its base (Wan / HunyuanVideo):
    fps, default size / frames / steps / guidance, and what its pipeline call needs."""
    if tiny:
        sizes = {"default_steps": 4}
    else:
        sizes = {}
    if cls.startswith("SkyReelsV2"):  # 540P models: 960x544, 97 frames at 24 fps
        real = {"default_fps": 24, "default_size": (960, 544), "default_frames": 97, "default_guidance": 6.0}
        return {**real, **sizes} if not tiny else {"default_fps": 24, **sizes}
    if cls == "WanVACEPipeline":
        return sizes
    if cls == "HunyuanVideoFramepackPipeline":
        # FramePack samples in sections of latent windows and may return more frames than asked:
        # generate trims them. Made for 30 fps, 640 px buckets, distilled guidance 10.
        real = {"default_fps": 30, "default_size": (640, 640), "default_frames": 129, "default_guidance": 10.0,
                "default_steps": 25}  # fmt: skip
        return {"trims_frames": True, **(real if not tiny else {"default_fps": 30}), **sizes}
    if cls.startswith("HunyuanVideo15"):
        # CFG through the pipeline's guider (no guidance_scale argument); 480p: 848x480, 121 frames
        real = {"default_size": (848, 480), "default_frames": 121, "default_steps": 50, "default_guidance": 6.0}
        return {"guidance_by_guider": True, "version": "1.5", **(real if not tiny else {}), **sizes}
    return sizes
