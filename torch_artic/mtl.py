"""Balancing several task losses into one objective (thesis §4.4.2.2, §4.6.1).

:class:`BalancedMTL` maps each task loss ``l_t`` (times an optional fixed pre-multiplier
``m_t``) through a strategy and sums:

===================  =========================================  ========================
strategy             total                                      d total / d l_t
===================  =========================================  ========================
``"exp"`` (default)  ``sum_t exp(m_t l_t / T)``                 ``m_t/T exp(m_t l_t/T)``
``"log"``            ``sum_t log(1 + m_t l_t)``                 ``m_t / (1 + m_t l_t)``
``"uncertainty"``    ``sum_t exp(-s_t) m_t l_t / 2 + s_t / 2``  ``m_t exp(-s_t) / 2``
``"fixed"``          ``sum_t w_t m_t l_t``                      ``w_t m_t``
``"dwa"``            ``sum_t lambda_t m_t l_t``                 ``lambda_t m_t``
===================  =========================================  ========================

- ``exp``: Liang & Zhang 2020, "A simple general approach to balance task difficulty in
  multi-task learning" (arXiv:2002.04792, BMTL): a monotonically increasing, convex map of
  each loss, so that tasks with larger losses get larger gradients. The thesis (§4.4.2.2)
  uses ``e^{l/50}``, hence ``T = 50`` by default.
- ``uncertainty``: Kendall, Gal & Cipolla 2018, learnable ``s_t = log sigma_t^2`` (the
  regression form ``l / (2 sigma^2) + log sigma``); at the optimum ``sigma_t^2 = m_t l_t``.
- ``dwa``: dynamic weight average, Liu, Johns & Davison 2019:
  ``lambda_k = K softmax_k(r / T)``, ``r_k = L_k(t-1) / L_k(t-2)``, ``T = 2``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ._checks import shape_str

__all__ = ["BalancedMTL"]

_STRATEGIES = ("exp", "log", "uncertainty", "fixed", "dwa")
_DEFAULT_T = {"exp": 50.0, "dwa": 2.0}
# exp(y) is used up to y_max, then continued linearly (finite value and gradient)
_EXP_MAX = {torch.float32: 80.0, torch.float64: 700.0}


def _float_vector(value, names: list[str], name: str, default: float) -> torch.Tensor:
    """A per-task vector from a sequence, a mapping name -> value, or a tensor."""
    k = len(names)
    if value is None:
        return torch.full((k,), default, dtype=torch.float64)
    if isinstance(value, Mapping):
        unknown = [key for key in value if key not in names]
        if unknown:
            raise ValueError(f"`{name}` has unknown tasks {unknown}; tasks are {names}")
        out = torch.full((k,), default, dtype=torch.float64)
        for key, v in value.items():
            out[names.index(key)] = float(v)
        return out
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.shape[0] != k:
            raise ValueError(f"`{name}` must have shape [{k}], got {shape_str(value.shape)}")
        return value.detach().to("cpu", torch.float64)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != k:
            raise ValueError(f"`{name}` must have {k} entries (one per task), got {len(value)}")
        try:
            return torch.tensor([float(v) for v in value], dtype=torch.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"`{name}` must hold numbers, got {value!r}") from exc
    raise TypeError(
        f"`{name}` must be a sequence, a mapping task -> number or a tensor, "
        f"got {type(value).__name__}"
    )


class BalancedMTL(nn.Module):
    r"""Combine per-task losses into one scalar to minimise.

    ``forward(losses)`` takes a sequence (in task order; ``None`` for an absent task) or a
    mapping ``name -> loss`` (a task missing from the mapping, or ``None``, is absent) of
    scalar losses and returns the combined scalar. An absent task is skipped that step: it
    contributes nothing, its parameters get no gradient, its DWA history is not updated
    (e.g. a supervised loss that exists only in labelled batches, thesis §7.3.3.1).

    Strategies (``m_t`` = ``multipliers``, applied before the mapping, as the thesis multiplies
    its reconstruction loss by 10):

    - ``"exp"``: :math:`\sum_t e^{m_t l_t / T}` (Liang & Zhang 2020, arXiv:2002.04792). The
      thesis's choice, with ``e^{l/50}``: default ``T = 50``. Beyond ``m_t l_t / T = 80``
      (float32; 700 in float64) ``e^y`` is continued linearly,
      :math:`e^{80} (1 + y - 80)`, so the value and gradient stay finite; on CPU a
      ``RuntimeWarning`` names the task (no check on other devices: no host sync).
    - ``"log"``: :math:`\sum_t \log(1 + m_t l_t)` (needs ``m_t l_t > -1``; losses are
      expected to be >= 0, anything else gives NaN/-inf as ``log1p`` does).
    - ``"uncertainty"``: :math:`\sum_t \tfrac12 e^{-s_t} m_t l_t + \tfrac12 s_t` with learnable
      ``s_t = log sigma_t^2`` (Kendall, Gal & Cipolla 2018), registered as the parameter
      ``log_vars`` (initialised to 0): optimise it together with the model.
    - ``"fixed"``: :math:`\sum_t w_t m_t l_t` with the given ``task_weights`` (default 1).
    - ``"dwa"``: :math:`\sum_t \lambda_t m_t l_t`, :math:`\lambda = K\,\mathrm{softmax}(r/T)`,
      :math:`r_k = L_k(t-1)/L_k(t-2)` from the two previous recorded losses of task ``k``
      (``r_k = 1`` until two are recorded), ``T = 2`` (Liu, Johns & Davison 2019). The
      weights are constants of the step (no gradient). ``dwa_update="step"`` records every
      call's losses; ``"epoch"`` accumulates them and records their averages when
      :meth:`end_epoch` is called, as in the paper.

    Losses are computed in float32 (float64 if any loss is float64), whatever their dtype
    (float16/bfloat16 losses from autocast are upcast; autocast is disabled inside), and
    the total has that dtype.

    Observable after each call (detached, per task in task order, NaN where absent):
    ``last_losses`` (raw ``l_t``), ``last_weights`` (``d total / d l_t``, analytic),
    ``last_present`` (bool); :meth:`log_dict` turns them into floats for a logger.
    ``state_dict`` holds ``multipliers`` and, per strategy, ``task_weights``, ``log_vars`` or
    the DWA history, and round-trips.

    Args:
        tasks: the number of tasks ``K >= 1`` (tasks are then named ``"0"``, ``"1"``, ...)
            or a sequence of ``K`` distinct task names.
        strategy: ``"exp"``, ``"log"``, ``"uncertainty"``, ``"fixed"`` or ``"dwa"``.
        temperature: ``T > 0`` for ``"exp"`` (default 50) and ``"dwa"`` (default 2); must be
            ``None`` for the other strategies.
        task_weights: for ``"fixed"`` only: ``K`` numbers >= 0 (a sequence, a tensor
            ``[K]`` or a mapping name -> weight, missing names 1).
        multipliers: per-task pre-multipliers ``m_t > 0`` (same forms; default 1).
        dwa_update: ``"step"`` or ``"epoch"`` (for ``"dwa"``).

    Example:
        >>> mtl = BalancedMTL(["recon", "middle", "conc"], multipliers={"recon": 10.0})
        >>> losses = {"recon": torch.tensor(0.2, requires_grad=True),
        ...           "middle": torch.tensor(1.1), "conc": torch.tensor(0.05)}
        >>> total = mtl(losses)
        >>> round(total.item(), 4), round(mtl.last_weights[0].item(), 4)
        (3.0641, 0.2082)
    """

    def __init__(
        self,
        tasks: int | Sequence[str],
        *,
        strategy: str = "exp",
        temperature: float | None = None,
        task_weights=None,
        multipliers=None,
        dwa_update: str = "step",
    ) -> None:
        super().__init__()
        if isinstance(tasks, bool):
            raise TypeError("`tasks` must be an int >= 1 or a sequence of task names, got bool")
        if isinstance(tasks, int):
            if tasks < 1:
                raise ValueError(f"`tasks` must be >= 1, got {tasks}")
            names = [str(i) for i in range(tasks)]
        elif isinstance(tasks, Sequence) and not isinstance(tasks, str):
            names = list(tasks)
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"`tasks` must be non-empty strings, got {names!r}")
            if len(set(names)) != len(names):
                raise ValueError(f"`tasks` must be distinct, got {names!r}")
        else:
            raise TypeError(
                f"`tasks` must be an int >= 1 or a sequence of task names, got {tasks!r}"
            )
        if strategy not in _STRATEGIES:
            raise ValueError(f"`strategy` must be one of {_STRATEGIES}, got {strategy!r}")
        if temperature is None:
            temperature = _DEFAULT_T.get(strategy)
        elif strategy not in _DEFAULT_T:
            raise ValueError(
                f"`temperature` applies to the 'exp' and 'dwa' strategies only, not {strategy!r}"
            )
        else:
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
                raise TypeError(f"`temperature` must be a float > 0, got {temperature!r}")
            if not 0.0 < temperature < math.inf:
                raise ValueError(f"`temperature` must be a finite float > 0, got {temperature}")
            temperature = float(temperature)
        if task_weights is not None and strategy != "fixed":
            raise ValueError(f"`task_weights` apply to the 'fixed' strategy only, not {strategy!r}")
        if dwa_update not in ("step", "epoch"):
            raise ValueError(f"`dwa_update` must be 'step' or 'epoch', got {dwa_update!r}")

        self.task_names: list[str] = names
        self.strategy = strategy
        self.temperature = temperature
        self.dwa_update = dwa_update
        k = len(names)
        mult = _float_vector(multipliers, names, "multipliers", 1.0)
        if not bool(((mult > 0) & torch.isfinite(mult)).all()):
            raise ValueError(f"`multipliers` must be finite and > 0, got {mult.tolist()}")
        self.register_buffer("multipliers", mult)  # float64: exact config
        if strategy == "fixed":
            w = _float_vector(task_weights, names, "task_weights", 1.0)
            if not bool(((w >= 0) & torch.isfinite(w)).all()):
                raise ValueError(f"`task_weights` must be finite and >= 0, got {w.tolist()}")
            self.register_buffer("task_weights", w)
        elif strategy == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(k))
        elif strategy == "dwa":
            # history[0] = L(t-1), history[1] = L(t-2); count = how many recorded (capped at 2)
            self.register_buffer("dwa_history", torch.ones(2, k, dtype=torch.float64))
            self.register_buffer("dwa_count", torch.zeros(k, dtype=torch.long))
            self.register_buffer("dwa_sum", torch.zeros(k, dtype=torch.float64))
            self.register_buffer("dwa_n", torch.zeros(k, dtype=torch.long))
        self.last_losses: torch.Tensor = torch.full((k,), math.nan)
        self.last_weights: torch.Tensor = torch.full((k,), math.nan)
        self.last_present: torch.Tensor = torch.zeros(k, dtype=torch.bool)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def extra_repr(self) -> str:
        t = "" if self.temperature is None else f", temperature={self.temperature}"
        return f"tasks={self.task_names}, strategy={self.strategy!r}{t}"

    # ------------------------------------------------------------------ inputs

    def _gather(self, losses) -> tuple[list[int], list[torch.Tensor]]:
        k = self.num_tasks
        items: list[tuple[int, object, str]] = []
        if isinstance(losses, Mapping):
            for key, value in losses.items():
                if isinstance(key, str) and key in self.task_names:
                    i = self.task_names.index(key)
                elif isinstance(key, int) and not isinstance(key, bool) and 0 <= key < k:
                    i = key
                else:
                    raise ValueError(
                        f"`losses` has an unknown task {key!r}; tasks are {self.task_names}"
                    )
                items.append((i, value, f"losses[{key!r}]"))
            seen = [i for i, _, _ in items]
            if len(set(seen)) != len(seen):
                raise ValueError("`losses` names a task twice (by name and by index)")
        elif isinstance(losses, Sequence) and not isinstance(losses, str):
            if len(losses) != k:
                raise ValueError(
                    f"`losses` must have {k} entries (one per task, None if absent), "
                    f"got {len(losses)}"
                )
            items = [(i, v, f"losses[{i}]") for i, v in enumerate(losses)]
        else:
            raise TypeError(
                "`losses` must be a sequence or a mapping task -> scalar loss tensor, "
                f"got {type(losses).__name__}"
            )
        idx, vals = [], []
        for i, value, label in sorted(items, key=lambda t: t[0]):
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"`{label}` must be a scalar tensor, got {type(value).__name__}")
            if not value.is_floating_point():
                raise TypeError(f"`{label}` must have a floating dtype, got {value.dtype}")
            if value.numel() != 1 or value.dim() > 1:
                raise ValueError(
                    f"`{label}` must be a scalar loss (shape [] or [1]), "
                    f"got {shape_str(value.shape)}"
                )
            idx.append(i)
            vals.append(value)
        if not idx:
            raise ValueError("`losses` holds no loss (every task absent)")
        device = self.multipliers.device
        for i, value in zip(idx, vals):
            if value.device != device:
                raise ValueError(
                    f"`losses[{self.task_names[i]!r}]` is on {value.device} but BalancedMTL is "
                    f"on {device}; move the module with .to({str(value.device)!r})"
                )
        return idx, vals

    # ------------------------------------------------------------------ forward

    def forward(self, losses) -> torch.Tensor:
        """Combine ``losses`` (sequence or mapping of scalar tensors) -> the scalar total."""
        idx_list, vals = self._gather(losses)
        ct = torch.float64 if any(v.dtype == torch.float64 for v in vals) else torch.float32
        device = vals[0].device
        with torch.autocast(device_type=device.type, enabled=False):
            idx = torch.tensor(idx_list, device=device)
            raw = torch.stack([v.reshape(()).to(ct) for v in vals])  # [P]
            m = self.multipliers.to(ct)[idx]
            z = m * raw
            if self.strategy == "exp":
                terms, weight = self._exp(z, m, idx_list)
            elif self.strategy == "log":
                terms = torch.log1p(z)
                weight = m / (1.0 + z.detach())
            elif self.strategy == "uncertainty":
                s = self.log_vars.to(ct)[idx]
                precision = torch.exp(-s)
                terms = 0.5 * precision * z + 0.5 * s
                weight = 0.5 * m * precision.detach()
            elif self.strategy == "fixed":
                w = self.task_weights.to(ct)[idx]
                terms = w * z
                weight = w * m
            else:  # dwa
                lam = self.dwa_weights().to(ct)[idx]
                terms = lam * z
                weight = lam * m
                self._dwa_record(idx, raw.detach())
            total = terms.sum()
        k = self.num_tasks
        self.last_present = torch.zeros(k, dtype=torch.bool, device=device)
        self.last_present[idx] = True
        self.last_losses = torch.full((k,), math.nan, dtype=ct, device=device)
        self.last_losses[idx] = raw.detach()
        self.last_weights = torch.full((k,), math.nan, dtype=ct, device=device)
        self.last_weights[idx] = weight.detach()
        return total

    def _exp(self, z, m, idx_list):
        t = self.temperature
        y = z / t
        y_max = _EXP_MAX[z.dtype]
        if y.device.type == "cpu" and not torch.compiler.is_compiling():
            over = (y.detach() > y_max).tolist()
            if any(over):
                names = [self.task_names[i] for i, o in zip(idx_list, over) if o]
                warnings.warn(
                    f"BalancedMTL('exp'): m * loss / T exceeds {y_max:g} for tasks {names} "
                    f"(losses {[v for v, o in zip(z.detach().tolist(), over) if o]}, "
                    f"T={t:g}); e^y would overflow {z.dtype}, so it is continued linearly "
                    "above that point. Raise `temperature` or lower the task's multiplier.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        y_c = y.clamp(max=y_max)
        e = torch.exp(y_c)
        terms = e * (1.0 + (y - y_c))  # e^y below y_max, e^{y_max} (1 + y - y_max) above
        return terms, (m / t) * e.detach()

    # ------------------------------------------------------------------ DWA

    def dwa_weights(self) -> torch.Tensor:
        """The current DWA weights ``lambda [K]`` (``K softmax(r / T)``; all 1 at the start)."""
        if self.strategy != "dwa":
            raise ValueError(f"dwa_weights() needs strategy 'dwa', not {self.strategy!r}")
        prev, prev2 = self.dwa_history[0], self.dwa_history[1]
        ok = (self.dwa_count >= 2) & (prev2 > 0)
        ratio = torch.where(ok, prev / torch.where(ok, prev2, 1.0), 1.0)
        return self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)

    def _push(self, mask: torch.Tensor, values: torch.Tensor) -> None:
        hist = self.dwa_history
        hist[1] = torch.where(mask, hist[0], hist[1])
        hist[0] = torch.where(mask, values, hist[0])
        self.dwa_count.add_(mask.long()).clamp_(max=2)

    def _dwa_record(self, idx: torch.Tensor, raw: torch.Tensor) -> None:
        vals = torch.zeros_like(self.dwa_sum)
        vals[idx] = raw.to(vals.dtype)
        mask = torch.zeros_like(self.dwa_count, dtype=torch.bool)
        mask[idx] = True
        if self.dwa_update == "step":
            self._push(mask, vals)
        else:
            self.dwa_sum.add_(vals)
            self.dwa_n.add_(mask.long())

    def end_epoch(self) -> None:
        """``dwa_update="epoch"``: record each task's average loss since the last call."""
        if self.strategy != "dwa" or self.dwa_update != "epoch":
            raise ValueError("end_epoch() needs strategy 'dwa' with dwa_update='epoch'")
        mask = self.dwa_n > 0
        self._push(mask, self.dwa_sum / self.dwa_n.clamp_min(1))
        self.dwa_sum.zero_()
        self.dwa_n.zero_()

    # ------------------------------------------------------------------ logging

    def log_dict(self, prefix: str = "") -> dict[str, float]:
        """``{prefix + name + "/loss": l_t, ... "/weight": d total / d l_t}`` for the tasks
        present at the last call (and ``"/sigma2"`` = ``exp(s_t)`` for ``"uncertainty"``).
        Reads values: a host sync on GPU, so call it when you log."""
        out: dict[str, float] = {}
        present = self.last_present.tolist()
        losses, weights = self.last_losses.tolist(), self.last_weights.tolist()
        sig = self.log_vars.detach().exp().tolist() if self.strategy == "uncertainty" else None
        for i, name in enumerate(self.task_names):
            if present[i]:
                out[f"{prefix}{name}/loss"] = losses[i]
                out[f"{prefix}{name}/weight"] = weights[i]
            if sig is not None:
                out[f"{prefix}{name}/sigma2"] = sig[i]
        return out
