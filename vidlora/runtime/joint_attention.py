"""HunyuanVideo's joint text + video attention with the video tokens split across ranks
(HunyuanVideo 1.0, FramePack and HunyuanVideo 1.5 attend the same way).

HunyuanVideo concatenates the text tokens to the video tokens inside every attention call
(double blocks: separate projections, one attention; single blocks: one sequence
throughout). diffusers' templated Ulysses splits whatever sequence reaches the attention
op, so with only the video split each rank would bring its own copy of the text and the
text keys would count once per rank. This processor replaces ``HunyuanVideoAttnProcessor2_0``
while context parallelism is on and does, with u = Ulysses degree, r = ring degree:

* video q/k/v [B, S/(u r), H, D]: all-to-all in the Ulysses group -> [B, S/r, H/u, D];
* text q/k/v [B, T, H, D], whole on every rank: each rank keeps its own H/u heads (no
  communication: the text is replicated);
* ring (r > 1): the video k/v are all-gathered in the ring group -> [B, S, H/u, D], as
  diffusers' ring does (its only rotate method all-gathers the key/value buffer up front);
* one attention call over [video, text] keys, in the single process's order, through the
  model's own backend (any backend: no log-sum-exp is needed), with the model's text mask
  (HunyuanVideo, FramePack: on the keys; HunyuanVideo 1.5: on queries and keys);
* the video output goes back by the inverse all-to-all; the text output's heads are
  all-gathered, so every rank carries the whole text stream on to the next block.

Per head, the attention op sees exactly the keys, values and mask of the single process in
the same order: the result is the one-process result (bit for bit on the CPU tests). The
projections, norms and rotary embedding are the original processor's code, unchanged.
Inference only (the collectives are not differentiated).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["JointCPAttnProcessor"]


def _seq_to_heads(x: torch.Tensor, group, n: int) -> torch.Tensor:
    """[B, s, H, D] on each of n ranks -> [B, n s, H/n, D]: every rank's tokens, its heads."""
    if n == 1:
        return x
    b, s, h, d = x.shape
    send = x.reshape(b, s, n, h // n, d).permute(2, 0, 1, 3, 4).contiguous()  # piece j -> rank j
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)  # recv[i]: rank i's tokens, my heads
    return recv.permute(1, 0, 2, 3, 4).reshape(b, n * s, h // n, d)


def _heads_to_seq(x: torch.Tensor, group, n: int) -> torch.Tensor:
    """The inverse of :func:`_seq_to_heads`: [B, n s, H/n, D] -> [B, s, H, D]."""
    if n == 1:
        return x
    b, seq, h, d = x.shape
    s = seq // n
    send = x.reshape(b, n, s, h, d).permute(1, 0, 2, 3, 4).contiguous()  # piece j: rank j's tokens
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)  # recv[i]: my tokens, rank i's heads
    return recv.permute(1, 2, 0, 3, 4).reshape(b, s, n * h, d)


def _gather(x: torch.Tensor, group, n: int, dim: int) -> torch.Tensor:
    if n == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


class JointCPAttnProcessor:
    """Stands in for one attention module's processor (kept in ``original``) while context
    parallelism is on; with no parallel config it simply calls the original."""

    _attention_backend = None
    _parallel_config = None

    def __init__(self, original):
        self.original = original
        self._attention_backend = getattr(original, "_attention_backend", None)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if self._parallel_config is None or self._parallel_config.context_parallel_config is None:
            self.original._attention_backend = self._attention_backend
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.embeddings import apply_rotary_emb

        cp = self._parallel_config.context_parallel_config
        u, r = cp.ulysses_degree, cp.ring_degree
        u_group, r_group = cp._ulysses_mesh.get_group(), cp._ring_mesh.get_group()
        text = encoder_hidden_states.shape[1] if encoder_hidden_states is not None else 0
        single = attn.add_q_proj is None  # single-stream block: one joint sequence throughout

        # 1-4: the original processor's projections, norms and rotary embedding
        if single and text:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)
        q, k, v = (proj(hidden_states).unflatten(2, (attn.heads, -1)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if single and text:
            (q, qt), (k, kt), (v, vt) = ((x[:, :-text], x[:, -text:]) for x in (q, k, v))
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
            k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
        if not single and text:
            qt, kt, vt = (proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
                          for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))  # fmt: skip
            if attn.norm_added_q is not None:
                qt = attn.norm_added_q(qt)
            if attn.norm_added_k is not None:
                kt = attn.norm_added_k(kt)

        # 5: video to heads (Ulysses), text sliced to the same heads, video keys gathered (ring)
        q, k, v = (_seq_to_heads(x, u_group, u) for x in (q, k, v))
        k, v = (_gather(x, r_group, r, dim=1) for x in (k, v))
        mask = None
        if text:
            h = attn.heads // u
            lo = cp._ulysses_local_rank * h
            qt, kt, vt = (x[:, :, lo : lo + h] for x in (qt, kt, vt))
            q, k, v = torch.cat([q, qt], dim=1), torch.cat([k, kt], dim=1), torch.cat([v, vt], dim=1)
            if attention_mask is not None and attention_mask.ndim == 2:
                # HunyuanVideo 1.5: the text mask [B, T]; its processor masks queries and keys alike
                keep = attention_mask.bool()
                q_keep = torch.cat([keep.new_ones((keep.shape[0], q.shape[1] - text)), keep], dim=1)
                k_keep = torch.cat([keep.new_ones((keep.shape[0], k.shape[1] - text)), keep], dim=1)
                mask = q_keep[:, None, :, None] & k_keep[:, None, None, :]
            elif attention_mask is not None:  # HunyuanVideo: [B, 1, 1, local video + text], the text part whole
                text_mask = attention_mask[..., -text:]
                video_mask = text_mask.new_ones((*text_mask.shape[:-1], k.shape[1] - text))
                mask = torch.cat([video_mask, text_mask], dim=-1)
        out = dispatch_attention_fn(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False,
                                    backend=self._attention_backend, parallel_config=None)  # fmt: skip
        out = out.to(q.dtype)
        if text:
            out, out_text = out[:, :-text], out[:, -text:]
            out_text = _gather(out_text, u_group, u, dim=2).flatten(2, 3)
        out = _heads_to_seq(out, u_group, u).flatten(2, 3)

        # 6: the original output projections
        if not text:
            return out, encoder_hidden_states
        if getattr(attn, "to_out", None) is not None:
            out = attn.to_out[1](attn.to_out[0](out))
        if getattr(attn, "to_add_out", None) is not None:
            out_text = attn.to_add_out(out_text)
        return out, out_text
