"""LayerNorm + Mamba over a feature map, as a sequence of spatial tokens or of channel tokens
(docs/architecture.md, "MambaLayer")."""

from __future__ import annotations

import math

import torch
from torch import nn

from umamba.mamba import Mamba, backends


def _channel_norm(x: torch.Tensor, c: int):
    """The Triton channels-first LayerNorm (channel_norm_triton.py) where umamba.mamba.backends allows it (CUDA
    compute capability >= 7.0, or Triton's interpreter, which the tests use), else None."""
    if backends.resolve_backend("norm", x.device, channels=c).backend != "triton":
        return None
    from umamba.nets import channel_norm_triton  # imported once already by the probe

    return channel_norm_triton.channel_layer_norm


class MambaLayer(nn.Module):
    """Applies `mamba(norm(tokens))` to a feature map (B, C, *S) and returns a map of the same shape.

    Spatial tokens (default): L = prod(S) tokens of C features, in row-major raster order (last axis fastest).
    Channel tokens: L = C tokens, each the flattened feature map of P = prod(S) values; `dim` is then P, so the
    layer only accepts maps of exactly that size.

    Whatever the surrounding autocast, the layer runs in float32 (fp16 activations overflow inside Mamba) and
    returns the input's dtype; only a layer whose parameters were converted to float64 runs in float64.
    There is no residual connection: the output replaces the feature map.
    """

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, channel_token: bool = False):
        super().__init__()
        self.dim = dim
        self.channel_token = channel_token
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        p = math.prod(spatial)
        expected = p if self.channel_token else c
        if expected != self.dim:
            what = "feature-map size prod(S)" if self.channel_token else "channel count C"
            raise ValueError(
                f"MambaLayer expects a {what} of {self.dim}, got input shape {tuple(x.shape)}"
                + (" (channel-token layers accept only inputs of the plan's patch size)" if self.channel_token else "")
            )
        # float32, unless the whole layer was deliberately converted to float64 (e.g. for gradient checks)
        compute_dtype = torch.float64 if self.norm.weight.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=x.device.type, enabled=False):
            # On CUDA, spatial tokens are normalised where they lie, (B, C, P), in the input's dtype, and umamba's
            # Mamba takes the (B, L, C) view of that without a copy. Not for another Mamba module swapped in
            # (the benchmarks' original arm: mamba-ssm's flattens its input, which would copy such a view).
            norm = None
            if not self.channel_token and compute_dtype == torch.float32 and type(self.mamba) is Mamba:
                norm = _channel_norm(x, c)
            if norm is not None:
                hn = norm(x.reshape(b, c, p), self.norm.weight, self.norm.bias, self.norm.eps)  # (B, C, P) f32
                y = self.mamba(hn.transpose(1, 2)).transpose(1, 2)  # (B, C, P), no copy either way
            elif self.channel_token:
                y = self.mamba(self.norm(x.to(compute_dtype).reshape(b, c, p)))  # tokens = channels: (B, L=C, P)
            else:
                # Mamba returns a (B, L, C) view of (B, C, L) storage: transposing back costs no copy
                h = x.to(compute_dtype).reshape(b, c, p)  # (B, C, P)
                y = self.mamba(self.norm(h.transpose(1, 2))).transpose(1, 2)  # (B, L=P, C) -> (B, C, P)
            y = y.reshape(b, c, *spatial)
        return y.to(x.dtype)
