"""A CPU attention backend for diffusers that returns the log-sum-exp: ring attention on CPU.

Ring attention merges the partial results of each rank's key/value chunk by their
log-sum-exp (out = o1 - sigmoid(lse2 - lse1) * (o1 - o2)), so it needs a backend that
returns it. Every such backend diffusers 0.42.1 registers is CUDA-only (flash, cuDNN,
native flash, Sage). The CPU build of torch has one op that does:
``aten::_scaled_dot_product_flash_attention_for_cpu`` -> (out, logsumexp), the kernel
behind ``scaled_dot_product_attention`` on CPU. This module registers it with diffusers'
attention dispatcher as ``"_vidlora_cpu_flash"`` (context parallel capable), so
``ring=2`` runs on CPU processes over gloo (the CLI's ``--gpus N --device cpu``, the tests).

diffusers' backend names are an Enum; registering adds one member to it (and nothing
else changes): :func:`register_cpu_lse_backend` does it once, on first use.
"""

from __future__ import annotations

import torch

__all__ = ["CPU_LSE_BACKEND", "register_cpu_lse_backend"]

CPU_LSE_BACKEND = "_vidlora_cpu_flash"


def _forward_op(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                enable_gqa=False, return_lse=False, _save_ctx=True, _parallel_config=None):  # fmt: skip
    """diffusers' forward-op contract: (B, S, H, D) in, (B, S, H, D) out [, (B, S, H) lse]."""
    if enable_gqa:
        raise ValueError(f"{CPU_LSE_BACKEND}: grouped-query attention is not supported")
    q, k, v = (x.transpose(1, 2).contiguous() for x in (query, key, value))
    if k.shape[2] == 0:  # no keys: the kernel divides by their count (SIGFPE); SDPA gives zeros
        out = q.new_zeros((*q.shape[:-1], v.shape[-1])).transpose(1, 2)
        lse = q.new_full(q.shape[:-1], float("-inf"), dtype=torch.float32).transpose(1, 2)
        return (out, lse) if return_lse else out
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # the op takes additive masks only
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        attn_mask = attn_mask.to(q.dtype)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
    )
    out = out.transpose(1, 2).contiguous()
    lse = lse.transpose(1, 2).contiguous()
    return (out, lse) if return_lse else out


def _backward_op(ctx, grad_out, *args, **kwargs):
    raise NotImplementedError(f"{CPU_LSE_BACKEND} is for inference: it has no backward pass")


def _attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False,
               return_lse=False, _parallel_config=None):  # fmt: skip
    if query.device.type != "cpu":
        raise ValueError(f"the {CPU_LSE_BACKEND} attention backend runs on CPU tensors; got {query.device}")
    if _parallel_config is None:
        return _forward_op(None, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, return_lse)
    from diffusers.models.attention_dispatch import _templated_context_parallel_attention

    return _templated_context_parallel_attention(
        query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa, return_lse,
        forward_op=_forward_op, backward_op=_backward_op, _parallel_config=_parallel_config,
    )  # fmt: skip


def register_cpu_lse_backend() -> str:
    """Register the backend with diffusers (idempotent); returns its name."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    if CPU_LSE_BACKEND in AttentionBackendName._value2member_map_:
        return CPU_LSE_BACKEND
    # One more member of diffusers' str Enum, made the way Enum makes its own members.
    member = str.__new__(AttentionBackendName, CPU_LSE_BACKEND)
    member._name_, member._value_ = "_VIDLORA_CPU_FLASH", CPU_LSE_BACKEND
    member.__objclass__ = AttentionBackendName
    AttentionBackendName._member_map_[member._name_] = member
    AttentionBackendName._value2member_map_[CPU_LSE_BACKEND] = member
    AttentionBackendName._member_names_.append(member._name_)
    _AttentionBackendRegistry.register(member, supports_context_parallel=True)(_attention)
    return CPU_LSE_BACKEND
