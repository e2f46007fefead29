"""The `triton` selective-scan backend: a chunked scan, parallel along the sequence, forward and backward.

mamba-ssm's kernel gives one thread block to each (batch, channel) and walks the whole sequence serially; at
U-Mamba Enc's long, narrow stages (d 64-128, l up to 2,097,152) that leaves most of the GPU idle. Here the
sequence is cut into chunks and every (batch, channel block, chunk) is its own program:

forward   1. chunk_state_fwd   per chunk, from a zero state: S_c = state at the chunk's end, Δ_c = Σ δ
          2. chunk_scan        across chunks: E_c = exp(A Δ_c) E_{c-1} + S_c   (the true state after chunk c)
          3. scan_out_fwd      per chunk, from E_{c-1}: step by step -> y·SiLU(z); the state every 16 steps
                               is kept for the backward pass, (b, l/16, d, n)
backward  1. chunk_state_bwd   per chunk: R_c = the adjoint carry a_{t0} λ_{t0} from a zero carry
          2. chunk_scan        across chunks, right to left: E_c = exp(A Δ_c) E_{c+1} + R_c
          3. scan_grad         per chunk, right to left: h re-run from the kept states, λ walked backwards,
                               then every gradient (see scan_triton_kernels.py for the equations)
The per-chunk passes are the "lane" kernels (scan_triton_lane_kernels.py): a channel's states in registers, no
cross-thread work in the forward. That holds up to 16 states (U-Mamba's d_state); a larger state would spill
registers, so `auto` sends n > 16 to another backend and forcing this one says so.
Nothing of size (b, d, l, n) is ever stored; the state and all sums are float32 (float64 for float64 inputs).
Inputs may be float32, bfloat16, float16 or float64; outputs and gradients take their input's dtype.

On CPU the kernels run under Triton's interpreter (TRITON_INTERPRET=1), which the tests use.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from umamba.errors import UserError
from umamba.mamba.scan import TRITON_MAX_STATES

import triton  # an ImportError here tells the dispatcher that this backend is unavailable

from umamba.mamba import scan_triton_kernels as _k
from umamba.mamba import scan_triton_lane_kernels as _l


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def is_available(device: torch.device | str | None = None) -> bool:
    """Triton imported and the tensors' device can run it (a CUDA device, or any device when interpreting)."""
    if interpreting():
        return True
    if device is not None and torch.device(device).type != "cuda":
        return False
    return torch.cuda.is_available()


@dataclasses.dataclass(frozen=True)
class ScanConfig:
    """Launch shape of the lane kernels. DB: channels per program of the forward kernels; NT: 16-step segments per
    chunk (0 = choose so that there are about `per_sm` programs per multiprocessor); DB_grad: channels per program
    of the gradient kernel (0 = DB); warps / warps_grad: warps per program of the forward / gradient kernels;
    lanes_grad > 1 shares a channel's states among 4 threads in the gradient kernel; stages / stages_grad: Triton
    software-pipelining depth of the forward / gradient kernels' loops; LB / CB: lanes and chunks per tile of the
    scan across chunks."""
    DB: int = 16
    DB_grad: int = 0
    NT: int = 0
    warps: int = 1
    warps_grad: int = 1
    per_sm: int = 16
    LB: int = 64
    CB: int = 32
    lanes_grad: int = 4
    stages: int = 1
    stages_grad: int = 1

    def to_text(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self))

    @staticmethod
    def parse(text: str) -> "ScanConfig":
        """'key=value,...' (e.g. 'DB=32,DB_grad=8,per_sm=64') -> ScanConfig; unknown keys raise."""
        kw = {k.strip(): int(v) for k, v in (kv.split("=") for kv in filter(None, text.strip().split(",")))}
        return ScanConfig(**kw)


# The fastest of the configurations swept on an H200 (BENCHMARKS.md, "GPU Triton scan launch configuration"): summed
# fwd+bwd time at U-Mamba Enc 3D stages 0 and 1 (b=2).
DEFAULT_CONFIG = ScanConfig(DB=32, DB_grad=8, warps=1, warps_grad=1, per_sm=64, lanes_grad=4, stages=3,
                            stages_grad=1)
CONFIG_ENV = "UMAMBA_TRITON_SCAN_CONFIG"  # e.g. "DB=32,DB_grad=8,per_sm=32" (benchmarks)


def _env_config() -> ScanConfig | None:
    text = os.environ.get(CONFIG_ENV, "").strip()
    if not text:
        return None
    try:
        return ScanConfig.parse(text)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{CONFIG_ENV}={text!r} is not a scan configuration ({exc})",
                        "use 'key=value,...' with ScanConfig fields, or unset it")


def _pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def _multiprocessors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def _plan(b: int, d: int, l: int, device: torch.device, cfg: ScanConfig):
    """(DB, T, NT, number of d blocks, tiles, chunks); T is the lane kernels' 16-step segment. Chunks are long
    enough to amortise the chunk passes but numerous enough that b · d-blocks · chunks fills the GPU
    several times over."""
    DB = min(cfg.DB, _pow2(d))
    T = _l.SEG
    ndb = -(-d // DB)
    ntiles = -(-l // T)
    NT = cfg.NT
    if NT <= 0:
        want_programs = cfg.per_sm * _multiprocessors(device)
        NT = max(1, (ntiles * b * ndb) // want_programs)
    NT = min(NT, ntiles)
    nc = -(-ntiles // NT)
    return DB, T, NT, ndb, ntiles, nc


def _flags(n: int, DB: int, f64: bool, delta_bias, delta_softplus, stages: int) -> dict:
    return dict(HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus), F64=f64, DB=DB,
                G=max(1, _pow2(n) // 4), STAGES=stages)                 # n = g·4 + k


def _rows(t: torch.Tensor | None) -> torch.Tensor | None:
    """The kernels take any batch/channel strides but need unit stride along the sequence (a transposed
    (E, B, L) view from the Mamba block is used as is, no copy)."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def _acc_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _chunk_scan(S, dsum, A, reverse, f64, cfg):
    b, nc, d, n = S.shape
    E = torch.empty_like(S)
    LB = min(cfg.LB, _pow2(d * n))
    grid = (b, triton.cdiv(d * n, LB))
    _k.chunk_scan_kernel[grid](S, dsum, A, E, d, n, nc, REVERSE=reverse, F64=f64, LB=LB, CB=cfg.CB,
                               num_warps=4)
    return E


def _grad_buffers(u, delta, z, n, nc, acc):
    """The backward kernels' outputs: du, dδ, dz (b, d, l); dB, dC (b, n, l) summed into atomically (zeroed);
    partial sums per chunk of dA (b, nc, d, n), dD and dbias (b, nc, d)."""
    b, d, l = u.shape
    du = torch.empty((b, d, l), device=u.device, dtype=u.dtype)
    ddelta = torch.empty((b, d, l), device=u.device, dtype=delta.dtype)
    dz = torch.empty((b, d, l), device=u.device, dtype=z.dtype) if z is not None else None
    dB = torch.zeros((b, n, l), device=u.device, dtype=acc)
    dC = torch.zeros((b, n, l), device=u.device, dtype=acc)
    dA = torch.empty((b, nc, d, n), device=u.device, dtype=acc)
    dD = torch.empty((b, nc, d), device=u.device, dtype=acc)
    dbias = torch.empty((b, nc, d), device=u.device, dtype=acc)
    return du, ddelta, dz, dB, dC, dA, dD, dbias


def _grad_results(B, C, D, delta_bias, du, ddelta, dz, dB, dC, dA, dD, dbias):
    """-> (du, ddelta, dA, dB, dC, dD or None, dz or None, ddelta_bias or None), partial sums added up."""
    return (du, ddelta, dA.sum((0, 1)), dB.to(B.dtype), dC.to(C.dtype),
            dD.sum((0, 1)) if D is not None else None, dz,
            dbias.sum((0, 1)) if delta_bias is not None else None)


def scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, store_states, cfg=DEFAULT_CONFIG):
    """-> (out, kept states or None, Δ per chunk or None, plan). Unit stride along l; A (d, n) contiguous."""
    b, d, l = u.shape
    n = A.shape[1]
    acc = _acc_dtype(u)
    f64 = acc == torch.float64
    DB, T, NT, ndb, ntiles, nc = plan = _plan(b, d, l, u.device, cfg)
    flags = _flags(n, DB, f64, delta_bias, delta_softplus, cfg.stages)
    grid = (nc, b * ndb)
    dummy = u
    zz = z if z is not None else u
    chunk_len = NT * T
    if nc > 1:
        S = torch.empty((b, nc, d, n), device=u.device, dtype=acc)
        dsum = torch.empty((b, nc, d), device=u.device, dtype=acc)
        _l.chunk_state_fwd_lane_kernel[grid](
            u, delta, B, A, delta_bias if delta_bias is not None else dummy, S, dsum,
            u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), B.stride(0), B.stride(1), A.stride(0),
            d, l, n, chunk_len, nc, num_warps=cfg.warps, **flags)
        E = _chunk_scan(S, dsum, A, False, f64, cfg)
    else:
        dsum = E = None
    out = torch.empty((b, d, l), device=u.device, dtype=u.dtype)
    H = torch.empty((b, ntiles, d, n), device=u.device, dtype=acc) if store_states else None
    _l.scan_out_fwd_lane_kernel[grid](
        u, delta, zz, B, C, A, D if D is not None else dummy, delta_bias if delta_bias is not None else dummy,
        E if E is not None else dummy, out, H if H is not None else dummy,
        u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
        B.stride(0), B.stride(1), C.stride(0), C.stride(1), A.stride(0), out.stride(0), out.stride(1),
        d, l, n, chunk_len, nc, ntiles,
        HAS_D=D is not None, HAS_Z=z is not None, STORE_STATES=H is not None, num_warps=cfg.warps, **flags)
    return out, H, dsum, plan


def scan_backward(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, H, dsum, plan, cfg=DEFAULT_CONFIG):
    """-> (du, ddelta, dA, dB, dC, dD or None, dz or None, ddelta_bias or None)."""
    b, d, l = u.shape
    n = A.shape[1]
    acc = _acc_dtype(u)
    f64 = acc == torch.float64
    DB_fwd, T, NT, _, ntiles, nc = plan
    # the gradient kernel may use its own channel-block size: nothing it shares with the forward depends on it.
    # The chunk-state pass keeps the forward's block and warps (a state pass like the forward's).
    DB = min(cfg.DB_grad or cfg.DB, _pow2(d))
    grid = (nc, b * -(-d // DB))
    DB_state, warps_state = DB_fwd, cfg.warps
    flags = _flags(n, DB, f64, delta_bias, delta_softplus, cfg.stages_grad)
    dummy = u
    zz = z if z is not None else u
    chunk_len = NT * T
    if nc > 1:
        R = torch.empty((b, nc, d, n), device=u.device, dtype=acc)
        _l.chunk_state_bwd_lane_kernel[(nc, b * -(-d // DB_state))](
            dout, zz, delta, C, A, delta_bias if delta_bias is not None else dummy, R,
            dout.stride(0), dout.stride(1), zz.stride(0), zz.stride(1), delta.stride(0), delta.stride(1),
            C.stride(0), C.stride(1), A.stride(0),
            d, l, n, chunk_len, nc, HAS_Z=z is not None, num_warps=warps_state, **dict(flags, DB=DB_state))
        E = _chunk_scan(R, dsum, A, True, f64, cfg)
    else:
        E = dummy
    du, ddelta, dz, dB, dC, dA, dD, dbias = _grad_buffers(u, delta, z, n, nc, acc)
    ins = (u, delta, zz, B, C, dout, A, D if D is not None else dummy,
           delta_bias if delta_bias is not None else dummy, H, E)
    outs = (du, ddelta, dz if dz is not None else du, dB, dC, dA, dD, dbias)
    common = (u.stride(0), u.stride(1), delta.stride(0), delta.stride(1), zz.stride(0), zz.stride(1),
              B.stride(0), B.stride(1), C.stride(0), C.stride(1), dout.stride(0), dout.stride(1), A.stride(0),
              du.stride(0), du.stride(1), d, l, n, chunk_len, nc, ntiles)
    # lanes_grad > 1: a channel's states shared by 4 threads (fewer registers: no spills)
    GL = flags["G"] if cfg.lanes_grad > 1 else 1
    _l.scan_grad_lane_kernel[grid](*ins, *outs, *common, HAS_D=D is not None, HAS_Z=z is not None, GL=GL,
                                   num_warps=cfg.warps_grad, **flags)
    return _grad_results(B, C, D, delta_bias, du, ddelta, dz, dB, dC, dA, dD, dbias)


class _SelectiveScanTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, cfg):
        store = any(ctx.needs_input_grad[:8])
        out, H, dsum, plan = scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, store, cfg)
        if store:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, H, dsum)
            ctx.delta_softplus = delta_softplus
            ctx.plan = plan
            ctx.cfg = cfg
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, H, dsum = ctx.saved_tensors
        grads = scan_backward(_rows(dout), u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, H, dsum,
                              ctx.plan, ctx.cfg)
        du, ddelta, dA, dB, dC, dD, dz, dbias = grads
        return (du, ddelta, dA.to(A.dtype), dB, dC, None if dD is None else dD.to(D.dtype), dz,
                None if dbias is None else dbias.to(delta_bias.dtype), None, None)


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          config: ScanConfig | None = None):
    """mamba-ssm `selective_scan_fn` semantics on CUDA tensors (any device under TRITON_INTERPRET=1).

    u, delta, z: (b, d, l); A: (d, n) real; B, C: (b, n, l) (or (b, 1, n, l)); D, delta_bias: (d,).
    Returns out (b, d, l) in u's dtype; differentiable in every tensor argument.
    """
    if not interpreting() and u.device.type != "cuda":
        raise UserError(f"the 'triton' selective-scan backend needs CUDA tensors, got tensors on {u.device}",
                        "move the tensors to a CUDA device, or use backend='auto' / 'portable'")
    if A.is_complex():
        raise UserError("the 'triton' selective-scan backend supports real A only", "use backend='portable'")
    if B.dim() == 4 and B.shape[1] == 1:
        B = B[:, 0]
    if C.dim() == 4 and C.shape[1] == 1:
        C = C[:, 0]
    if B.dim() != 3 or C.dim() != 3:
        raise UserError(f"the 'triton' selective-scan backend needs B, C of shape (b, n, l), got "
                        f"{tuple(B.shape)}, {tuple(C.shape)}", "use backend='portable'")
    if u.shape[-1] == 0:
        return torch.empty_like(u)
    if A.shape[1] > TRITON_MAX_STATES:
        raise UserError(f"the 'triton' selective-scan backend takes up to {TRITON_MAX_STATES} states, got "
                        f"{A.shape[1]}", "use backend='auto' (mamba-ssm's kernel or the portable scan)")
    cfg = config or _env_config() or DEFAULT_CONFIG
    u, delta, B, C, z = _rows(u), _rows(delta), _rows(B), _rows(C), _rows(z)
    A = A.contiguous()
    D = None if D is None else D.contiguous()
    delta_bias = None if delta_bias is None else delta_bias.contiguous()
    return _SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), cfg)
