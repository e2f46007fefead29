"""The Mamba v1 block (the `mamba_simple.Mamba` of mamba-ssm), re-implemented to run on any torch device.

Parameter names, shapes, dtypes and initialisation are the checkpoint contract of the original (see
docs/architecture.md, "The Mamba block"), so a `state_dict` saved from one loads with `strict=True` into the other.
The modules are created in the original's order so that, for the same RNG seed, the initial weights coincide.

Forward for h of shape (B, L, d), E = expand·d, N = d_state, R = dt_rank:
    x, z   = split(in_proj(h))                         # (B, E, L) each
    x      = SiLU(causal depthwise conv1d(x))          # (B, E, L)
    dt,B,C = split(x_proj(x))                          # (B, R, L), (B, N, L), (B, N, L)
    Δ      = softplus(dt_proj.weight @ dt + dt_proj.bias)
    A      = -exp(A_log)                               # (E, N) float32
    h_t    = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t ;  y_t = C_t·h_t + D x_t
    out    = out_proj(y ⊙ SiLU(z))                     # (B, L, d)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from umamba.errors import UserError
from umamba.mamba.channel_linear import channel_linear
from umamba.mamba.conv import causal_conv1d_silu
from umamba.mamba.scan import selective_scan


class Mamba(nn.Module):
    """Selective state-space block, Mamba v1. Same signature as `mamba_ssm.Mamba` (mamba_simple).

    `use_fast_path` and `layer_idx` are kept for compatibility: the kernels are chosen per call by the scan
    backend (`umamba.mamba.selective_scan`, UMAMBA_SCAN_BACKEND) and by `causal_conv1d` being importable.
    """

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001, dt_max=0.1,
                 dt_init="random", dt_scale=1.0, dt_init_floor=1e-4, conv_bias=True, bias=False,
                 use_fast_path=True, layer_idx=None, device=None, dtype=None):
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(self.expand * self.d_model)
        self.dt_rank = math.ceil(self.d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(self.d_model, self.d_inner * 2, bias=bias, **factory_kwargs)
        # depthwise: one kernel of width d_conv per channel; padding d_conv-1 on both sides, the forward keeps
        # the first L outputs, which makes it causal
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias, **factory_kwargs)
        self.activation = "silu"
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + self.d_state * 2, bias=False, **factory_kwargs)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory_kwargs)

        # dt_proj.weight ~ U(-s, s) (or = s), s = R^-0.5 · dt_scale, so that Δ starts in [dt_min, dt_max]
        dt_init_std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise UserError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        # dt log-uniform in [dt_min, dt_max], floored; the bias is softplus^-1(dt) = dt + log(1 - exp(-dt))
        dt = torch.exp(torch.rand(self.d_inner, **factory_kwargs) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_dt)
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation: A_n = -(n+1), stored as log; float32 whatever `dtype` is
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=device)  # (N,)
        A = A.unsqueeze(0).expand(self.d_inner, -1).contiguous()                    # (E, N)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))             # (E,) float32
        self.D._no_weight_decay = True

        self.out_proj = nn.Linear(self.d_inner, self.d_model, bias=bias, **factory_kwargs)

    def forward(self, hidden_states, inference_params=None):
        """hidden_states: (B, L, d_model) -> (B, L, d_model), a view of channels-first (B, d_model, L) storage
        (the block works channels-first, see below; `.reshape` it, not `.view`, when another layout is needed)."""
        if inference_params is not None:
            raise UserError("umamba's Mamba does not implement step-wise decoding (inference_params); "
                            "call it on whole sequences")
        h = hidden_states
        if not isinstance(h, torch.Tensor) or h.dim() != 3 or h.shape[-1] != self.d_model:
            got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise UserError(f"Mamba expects hidden_states of shape (batch, length, d_model={self.d_model}), "
                            f"got {got}")
        if h.shape[1] == 0:
            raise UserError("Mamba needs a sequence of length ≥ 1, got length 0")
        b, seqlen, _ = h.shape

        # The projections act on the channel axis of channels-first (B, ·, L) tensors, one matrix product per batch
        # element (channel_linear.py): no transposing copy anywhere (the original transposes h, x and y, which at
        # U-Mamba Enc's first stage took longer than the scan's forward, BENCHMARKS.md). h may be (B, L, d) storage
        # or a (B, L, d) view of (B, d, L) storage (MambaLayer's channels-first norm): neither is copied.
        xz = channel_linear(h.transpose(1, 2), self.in_proj.weight)       # (B, 2E, L)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(dtype=xz.dtype)[:, None]
        # float32 like the original (A_log, D, the Δ bias and the scan state are float32 whatever the input
        # dtype), except that float64 inputs get a float64 scan throughout
        sd = torch.float64 if xz.dtype == torch.float64 else torch.float32
        A = -torch.exp(self.A_log.to(sd))                                   # (E, N)

        x, z = xz.chunk(2, dim=1)                                           # (B, E, L) each
        x = causal_conv1d_silu(x, self.conv1d.weight, self.conv1d.bias)     # (B, E, L)

        x_dbl = channel_linear(x, self.x_proj.weight)                        # (B, R + 2N, L)
        dt, Bm, Cm = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)  # views, unit stride in L
        dt = channel_linear(dt, self.dt_proj.weight)                         # (B, E, L)

        y = selective_scan(x, dt, A, Bm, Cm, self.D.to(sd), z=z,
                           delta_bias=self.dt_proj.bias.to(sd), delta_softplus=True)  # (B, E, L)
        out = channel_linear(y, self.out_proj.weight)                        # (B, d, L)
        if self.out_proj.bias is not None:
            out = out + self.out_proj.bias.to(dtype=out.dtype)[:, None]
        return out.transpose(1, 2)                                           # (B, L, d), a view
