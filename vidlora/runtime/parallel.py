"""``vidlora.context_parallel``: one video on several GPUs, on diffusers' own engine.

    torch.distributed.init_process_group("nccl")        # torchrun, or vidlora --gpus N
    torch.cuda.set_device(rank)
    cp = vidlora.context_parallel(pipe, ulysses=4)     # before or after attach / add
    out = pipe(prompt, generator=torch.Generator().manual_seed(0))
    if cp.is_main: vidlora.write_mp4(out.frames[0], "out.mp4")

diffusers' context parallelism (``enable_parallelism``) cuts the token axis of the very
transformer vidlora patches: hooks split the sequence where a family's plan says (Wan: the
rotary tables and the hidden states entering ``blocks.0``) and gather it at ``proj_out``;
Ulysses exchanges tokens for heads around each attention op (all-to-all), ring passes the
key/value chunks around. vidlora's units are token-local (one row in, one row out), so they
run unchanged on each rank's share of the tokens: fused q/k/v, FP8, schedules, two experts.

What vidlora adds on top of ``enable_parallelism``:

* both experts of Wan 2.2 on one device mesh;
* the checks diffusers leaves to a traceback, made before any step, each naming the fix:
  heads not divisible by the Ulysses degree, a token count not divisible by the ranks
  (at the first forward: the count depends on frames and size), no plan, ring without a
  backend that returns the log-sum-exp;
* plans for families diffusers has none for (the specs' ``cp_plans``), and HunyuanVideo's
  joint text + video attention (joint_attention.py);
* a swap of a hooked module (a LoRA on ``proj_out``) carries its hooks (cp_hooks.py);
* the latents entering each transformer call are rank 0's (one broadcast per call: 10 MB
  for Wan 14B at 720p), so ranks that drew different noise cannot blend two videos;
* on ranks other than 0 the pipeline returns latents (no VAE decode) and shows no progress.

Inference only. Call :meth:`ContextParallel.remove` to go back to one process's behaviour.
"""

from __future__ import annotations

import functools
import inspect

import torch
import torch.distributed as dist
from torch import nn

from vidlora.errors import VidloraError
from vidlora.model import FAMILIES, CPPlan, Gather, Split, spec_for_model

from .cpu_attention import CPU_LSE_BACKEND, register_cpu_lse_backend
from .joint_attention import JointCPAttnProcessor
from .patching import find_transformers

__all__ = ["context_parallel", "ContextParallel", "CPU_LSE_BACKEND"]

# backends that run under diffusers' context parallelism but cannot return the log-sum-exp
_NO_LSE = {"native", "_native_npu"}


def context_parallel(
    pipe_or_transformer,
    ulysses: int | None = None,
    ring: int = 1,
    *,
    mesh=None,
    attention_backend: str | None = None,
    ulysses_anything: bool = False,
    ring_anything: bool = False,
    broadcast_latents: bool = True,
) -> "ContextParallel":
    """Split every transformer of a pipeline (both Wan 2.2 experts) across the ranks.

    Call after ``torch.distributed.init_process_group``, on every rank, with the same
    arguments. ulysses: the Ulysses degree (None: world size // ring); ring: the ring
    degree; ulysses x ring = the number of ranks (or the mesh's ring x ulysses).
    mesh: a DeviceMesh with "ring" and "ulysses" dimensions (default: one over all ranks).
    attention_backend: set this diffusers backend first (ring needs one that returns the
        log-sum-exp: "_native_cudnn", "flash", "_native_flash"; on CPU "_vidlora_cpu_flash").
        "auto": for ring, where the model's backend cannot return it, "_native_cudnn" on
        CUDA (bf16/fp16) or "_vidlora_cpu_flash" on CPU; otherwise leave the backend alone.
    ulysses_anything / ring_anything: diffusers' uneven split (any token or head count).
    broadcast_latents: give every rank rank 0's latents at each transformer call.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise VidloraError(
            "context_parallel needs torch.distributed: call torch.distributed.init_process_group() first "
            "(torchrun and vidlora --gpus N do it), on every rank"
        )
    pipe, models = find_transformers(pipe_or_transformer)
    plans = {key: _plan_of(key, model, ring) for key, model in models.items()}
    ulysses, ring = _degrees(ulysses, ring, mesh)
    for key, model in models.items():
        _check_split(key, model, plans[key], ulysses, ring, ulysses_anything, ring_anything)
    if torch.accelerator.device_count() == 0:
        raise VidloraError(
            "diffusers 0.42.1's enable_parallelism picks each rank's device as rank % "
            "torch.accelerator.device_count(), and this torch sees no accelerator (0): context parallelism "
            "runs on GPUs (a CUDA build of torch, one GPU per rank)"
        )
    if attention_backend == "auto":
        attention_backend = _auto_backend(models, plans, ring)
    if attention_backend == CPU_LSE_BACKEND:
        register_cpu_lse_backend()
    backends = {key: _backend_of(model, attention_backend) for key, model in models.items()}
    for key, model in models.items():
        _check_backend(key, model, ring, plans[key], backends[key])
    if mesh is None:
        mesh = torch.distributed.device_mesh.init_device_mesh(
            _mesh_device(), (ring, ulysses), mesh_dim_names=("ring", "ulysses")
        )
    return ContextParallel(pipe, models, plans, mesh, ulysses, ring, ulysses_anything, ring_anything,
                           broadcast_latents, attention_backend)  # fmt: skip


def _degrees(ulysses, ring, mesh) -> tuple[int, int]:
    world = dist.get_world_size()
    if mesh is not None:
        names = tuple(mesh.mesh_dim_names or ())
        if "ring" not in names or "ulysses" not in names:
            raise VidloraError(f"mesh= needs dimensions named 'ring' and 'ulysses'; it has {names}")
        world = mesh["ring"].size() * mesh["ulysses"].size()
    for name, value in (("ring", ring), ("ulysses", ulysses)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise VidloraError(f"{name}= must be a whole number >= 1; got {value!r}")
    if ulysses is None:
        if world % ring:
            raise VidloraError(f"ring={ring} does not divide the {world} ranks; pick a divisor of {world}")
        ulysses = world // ring
    if ulysses * ring != world:
        raise VidloraError(
            f"ulysses={ulysses} x ring={ring} = {ulysses * ring} ranks, but {world} are running: the product "
            f"must equal the number of ranks (e.g. ulysses={world // ring if world % ring == 0 else world}, ring=1)"
        )
    if world < 2:
        raise VidloraError("context_parallel needs at least 2 ranks; with one process, run the pipeline as it is")
    if mesh is not None and (mesh["ring"].size(), mesh["ulysses"].size()) != (ring, ulysses):
        raise VidloraError(f"mesh= is ring {mesh['ring'].size()} x ulysses {mesh['ulysses'].size()}; "
                           f"asked for ring {ring} x ulysses {ulysses}")  # fmt: skip
    return ulysses, ring


def _plan_of(key: str, model: nn.Module, ring) -> CPPlan:
    if getattr(model, "_parallel_config", None) is not None:
        raise VidloraError(f"{key} already runs with parallelism; call remove() on its ContextParallel handle first")
    spec = spec_for_model(model)
    names = [c.__name__ for c in type(getattr(model, "_orig_mod", model)).__mro__]
    plan = next((spec.cp_plans[n] for n in names if n in spec.cp_plans), None)
    if plan is None:
        have = ", ".join(c for s in FAMILIES for c in s.cp_plans) or "none"
        raise VidloraError(f"{key} is a {type(model).__name__}: vidlora has no context-parallel plan for it "
                           f"(plans: {have})")  # fmt: skip
    if plan.model_plan and getattr(model, "_cp_plan", None) is None:
        raise VidloraError(f"{key} ({type(model).__name__}) has no _cp_plan in this diffusers version")
    reason = plan.refuse(model.config, ring if isinstance(ring, int) else 1)
    if reason:
        raise VidloraError(f"{key} cannot be split across ranks: {reason}")
    return plan


def _check_split(key, model, plan: CPPlan, ulysses, ring, ulysses_anything, ring_anything) -> None:
    if plan.joint_text and (ulysses_anything or ring_anything):
        raise VidloraError(f"{key}: ulysses_anything / ring_anything are not supported with the joint text + video "
                           "attention of this family; choose a frame count and size whose tokens divide")  # fmt: skip
    heads = int(getattr(model.config, "num_attention_heads", 0) or 0)
    if heads and heads % ulysses and not ulysses_anything:
        fits = [d for d in range(2, ulysses * ring + 1) if heads % d == 0 and (ulysses * ring) % d == 0]
        hint = f"ulysses={fits[-1]}, ring={ulysses * ring // fits[-1]}" if fits else f"ring={ulysses * ring}, ulysses=1"
        raise VidloraError(
            f"{key} has {heads} attention heads, which do not divide by ulysses={ulysses}: Ulysses gives each rank "
            f"heads/ulysses of them. Use {hint}, or ulysses_anything=True"
        )


def _processors(model: nn.Module):
    for m in model.modules():
        processor = getattr(m, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            yield m, processor


def _backend_of(model: nn.Module, wanted: str | None) -> str:
    """The attention backend ``model`` will run: ``wanted`` (checked) or its processors' own."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    if wanted is not None:
        try:
            return AttentionBackendName(wanted).value
        except ValueError:
            known = ", ".join(sorted(b.value for b in AttentionBackendName))
            raise VidloraError(f"attention_backend={wanted!r} is not a diffusers backend; known: {known}") from None
    for _, processor in _processors(model):
        backend = processor._attention_backend
        if backend is not None:
            return str(getattr(backend, "value", backend))
    return str(_AttentionBackendRegistry.get_active_backend()[0].value)


def _auto_backend(models: dict, plans: dict, ring: int) -> str | None:
    if ring == 1:
        return None
    for key, model in models.items():
        if plans[key].joint_text or _backend_of(model, None) not in _NO_LSE:
            continue
        return CPU_LSE_BACKEND if next(model.parameters()).device.type == "cpu" else "_native_cudnn"
    return None


def _check_backend(key: str, model: nn.Module, ring: int, plan: CPPlan, backend: str) -> None:
    if ring == 1 or plan.joint_text:  # the joint processor gathers whole key/value: any backend
        return
    on_cpu = next(model.parameters()).device.type == "cpu"
    if on_cpu and backend != CPU_LSE_BACKEND:
        raise VidloraError(
            f"ring={ring} merges partial attention by its log-sum-exp, and {key}'s backend {backend!r} on CPU does "
            f"not return it: pass attention_backend={CPU_LSE_BACKEND!r} (or use ulysses only)"
        )
    if not on_cpu and (backend in _NO_LSE or backend == CPU_LSE_BACKEND):
        raise VidloraError(
            f"ring={ring} merges partial attention by its log-sum-exp, and {key}'s attention backend {backend!r} does "
            "not return it: pass attention_backend='_native_cudnn' (bf16/fp16), 'flash' or '_native_flash'"
        )


def _mesh_device() -> str:
    backend = str(dist.get_backend())
    if "nccl" in backend or ":" in backend:
        return torch._C._get_accelerator().type
    return "cpu"


def _diffusers_plan(plan: CPPlan, model: nn.Module) -> dict:
    if plan.model_plan:
        return model._cp_plan
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    def one(entry):
        if entry is None:
            return None
        if isinstance(entry, tuple):
            return tuple(one(e) for e in entry)
        if isinstance(entry, Gather):
            return ContextParallelOutput(gather_dim=entry.dim, expected_dims=entry.ndim)
        return ContextParallelInput(split_dim=entry.dim, expected_dims=entry.ndim, split_output=entry.output)

    out = {}
    for path, entry in plan.module_plan(model.config).items():
        if isinstance(entry, (Gather, tuple)):
            out[path] = one(entry) if isinstance(entry, Gather) else list(one(entry))
        else:
            out[path] = {k: (one(v) if isinstance(v, Split) else list(one(v))) for k, v in entry.items()}
    return out


def _keep_local(model: nn.Module, patterns: tuple[str, ...]) -> None:
    """No parallel config on the attention modules ``patterns`` name (CPPlan.local_attention)."""
    from diffusers.hooks.context_parallel import _get_submodule_by_name

    for pattern in patterns:
        found = _get_submodule_by_name(model, pattern)
        for m in found if isinstance(found, list) else [found]:
            if hasattr(getattr(m, "processor", None), "_parallel_config"):
                m.processor._parallel_config = None


class ContextParallel:
    """What :func:`context_parallel` turned on, and how to turn it off (:meth:`remove`)."""

    def __init__(self, pipe, models, plans, mesh, ulysses, ring, ulysses_anything, ring_anything, broadcast,
                 attention_backend=None):  # fmt: skip
        from diffusers import ContextParallelConfig
        from diffusers.models.attention_dispatch import AttentionBackendName

        self.ulysses, self.ring = ulysses, ring
        self.world_size = ulysses * ring
        self.rank = dist.get_rank()
        self.mesh = mesh
        self._pipe, self._models, self._plans = pipe, dict(models), plans
        self._applied: dict[str, dict] = {}
        self._processors: list[tuple[nn.Module, object]] = []  # (attention module, original processor)
        self._backends: list[tuple[object, object]] = []  # (processor, its backend before)
        self._hooks: list = []
        self._broadcast = broadcast
        self._anything = ulysses_anything or ring_anything
        flat = mesh["ring", "ulysses"]._flatten()
        self._group = flat.get_group()
        self._src = dist.get_global_rank(self._group, 0)
        self.is_main = dist.get_rank(self._group) == 0
        try:
            for key, model in self._models.items():
                plan = plans[key]
                if attention_backend is not None:  # per processor: diffusers' set_attention_backend is global
                    for _, processor in _processors(model):
                        self._backends.append((processor, processor._attention_backend))
                        processor._attention_backend = AttentionBackendName(attention_backend)
                if plan.joint_text:
                    self._install_joint(model, plan)
                config = ContextParallelConfig(ring_degree=ring, ulysses_degree=ulysses, mesh=mesh,
                                               ulysses_anything=ulysses_anything, ring_anything=ring_anything)  # fmt: skip
                self._applied[key] = cp_plan = _diffusers_plan(plan, model)
                model.enable_parallelism(config=config, cp_plan=cp_plan)
                _keep_local(model, plan.local_attention)
                self._hooks.append(model.register_forward_pre_hook(self._pre_forward(key, plan), with_kwargs=True))
            self._main_only_output(pipe)
        except BaseException:
            self.remove()
            raise

    @property
    def layout(self) -> str:
        """``"ulysses 2 x ring 1"``: how the tokens are split."""
        return f"ulysses {self.ulysses} x ring {self.ring}"

    def __repr__(self) -> str:
        return f"ContextParallel({self.layout} over {self.world_size} ranks, rank {self.rank}, on {', '.join(self._models)})"

    # ------------------------------------------------------------------ per call
    def _pre_forward(self, key: str, plan: CPPlan):
        names: list[str] = []

        def hook(module, args, kwargs):
            if not names:  # forward's parameter names, to read positional inputs by name
                names.extend(list(inspect.signature(type(module).forward).parameters)[1:])
            inputs = {**dict(zip(names, args)), **kwargs}
            hidden = inputs["hidden_states"]
            tokens = plan.tokens(module.config, inputs)
            if tokens % self.world_size and not self._anything:
                raise VidloraError(
                    f"{key}: a latent of {tuple(hidden.shape[-3:])} (frames, height, width) makes {tokens} "
                    f"tokens, which do not divide by the {self.world_size} ranks. Choose a frame count or size whose "
                    f"token count divides by {self.world_size}, or pass ulysses_anything=True (ring: ring_anything=True)"
                )
            reason = plan.check(module.config, inputs, self.world_size)
            if reason:
                raise VidloraError(f"{key}: {reason}")
            if self._broadcast:
                if not hidden.is_contiguous():
                    hidden = hidden.contiguous()
                dist.broadcast(hidden, src=self._src, group=self._group)
                if "hidden_states" in kwargs:
                    kwargs["hidden_states"] = hidden
                else:
                    args = (hidden, *args[1:])
            return args, kwargs

        return hook

    # ------------------------------------------------------------------ setup pieces
    def _install_joint(self, model: nn.Module, plan: CPPlan) -> None:
        for under in plan.joint_under:
            for _, m in model.get_submodule(under).named_modules():
                processor = getattr(m, "processor", None)
                if processor is not None and hasattr(processor, "_parallel_config"):
                    self._processors.append((m, processor))
                    m.processor = JointCPAttnProcessor(processor)

    def _main_only_output(self, pipe) -> None:
        self._pipe_class = None
        if pipe is None or self.is_main:
            return
        self._pipe_class = type(pipe)
        pipe.__class__ = _latents_only(type(pipe))
        self._progress = dict(getattr(pipe, "_progress_bar_config", {}) or {})
        pipe.set_progress_bar_config(**{**self._progress, "disable": True})

    # ------------------------------------------------------------------ undo
    def remove(self) -> None:
        """Back to one process's behaviour: hooks, processors, the pipeline's class."""
        from diffusers.hooks.context_parallel import remove_context_parallel

        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for key, cp_plan in self._applied.items():  # also a model whose enable_parallelism failed half way
            model = self._models[key]
            try:
                remove_context_parallel(model, cp_plan)
            except ValueError:  # a plan path the model lacks: nothing was hooked there
                pass
            for _, processor in _processors(model):
                if hasattr(processor, "_parallel_config"):
                    processor._parallel_config = None
            model._parallel_config = None
        self._applied.clear()
        for m, processor in self._processors:
            m.processor = processor
        self._processors.clear()
        for processor, backend in reversed(self._backends):
            processor._attention_backend = backend
        self._backends.clear()
        if getattr(self, "_pipe_class", None) is not None:
            self._pipe.__class__ = self._pipe_class
            self._pipe._progress_bar_config = self._progress
            self._pipe_class = None


_LATENTS_ONLY: dict[type, type] = {}


def _latents_only(cls: type) -> type:
    """A subclass of a pipeline class whose call returns latents (no VAE decode): ranks
    other than 0 would only decode the same video again."""
    sub = _LATENTS_ONLY.get(cls)
    if sub is None:
        signature = inspect.signature(cls.__call__)

        def __call__(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.arguments["output_type"] = "latent"
            return cls.__call__(*bound.args, **bound.kwargs)

        # the original's name, docs and signature (callers inspect which arguments it takes)
        functools.update_wrapper(__call__, cls.__call__)

        sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__, "__doc__": cls.__doc__,
                                          "_vidlora_latents_only": True})  # fmt: skip
        _LATENTS_ONLY[cls] = sub
    return sub
