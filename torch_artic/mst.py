"""Differentiable minimum spanning trees (thesis §5.3.1.1, Listing 5.1).

:func:`dmst` maps ``[..., K, K]`` edge costs to a ``[..., K, K]`` spanning-tree
adjacency under one of four relaxations:

- ``"hard"``: the exact minimum spanning tree (Prim's algorithm, vectorised over the
  batch, O(K^2) per graph), with deterministic tie-breaking;
- ``"soft"``: the edge marginals of the Gibbs distribution over spanning trees,
  ``p(T) ∝ exp(-w(T) / tau)``, from the matrix-tree theorem;
- ``"ste"`` (default): the exact tree forward, the ``"soft"`` gradient backward
  (straight-through) — what the thesis's Listing 5.1 set out to do;
- ``"perturbed"``: the perturbed optimiser of Berthet et al. (2020), the mean of
  exact trees under Gaussian noise, with its Monte-Carlo gradient estimator.

See ``docs/mst.md`` for the derivations.
"""

from __future__ import annotations

import torch

from ._checks import check_int, check_positive, check_shape, check_tensor
from ._native import NativeOp

__all__ = ["RELAXATIONS", "dmst"]

RELAXATIONS = ("hard", "ste", "soft", "perturbed")
"""The values of :func:`dmst`'s (and :func:`~torch_artic.lvmst`'s) ``relaxation``."""


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _symmetrize(w: torch.Tensor) -> torch.Tensor:
    """``min(W, W^T)``: the undirected graph whose edge (i, j) costs the cheaper of
    ``w_ij`` and ``w_ji`` (scipy's rule for directed input). Exact for a symmetric W."""
    return torch.minimum(w, w.transpose(-1, -2))


def _nan_graphs(s: torch.Tensor) -> torch.Tensor:
    """``[N]`` bool: graphs of ``[N, K, K]`` (zero diagonal) with a NaN weight."""
    return torch.isnan(s.amin((1, 2)))  # amin propagates NaN (and ±inf give no NaN)


def _prim(costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact MSTs of ``[N, K, K]`` costs (read as ``min(W, W^T)``, diagonal ignored):
    ``(parent [N, K], order [N, K], adjacency [N, K, K])``, the adjacency all NaN for a
    graph with a NaN cost.

    The native CPU kernel (``torch.ops.torch_artic.mst_prim``: Prim per graph, graphs in
    parallel, symmetrisation and NaN detection on the fly) when it applies, else
    :func:`_prim_torch`; both use the same strict edge order, so they return identical
    trees (tested).
    """
    return _MST_PRIM(costs.contiguous())


def _prim_torch(costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference of ``mst_prim``: :func:`_prim_tree` on ``min(W, W^T)``, plus the
    adjacency (NaN for graphs with a NaN cost)."""
    s = _symmetrize(costs)
    s.diagonal(dim1=1, dim2=2).zero_()  # ignored: never read, and no NaN from there
    parent, order = _prim_tree(s)
    adjacency = _adjacency(parent, costs.dtype)
    nan = _nan_graphs(s)[:, None, None]
    return parent, order, torch.where(nan, torch.nan, adjacency)


def _prim_tree(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prim's algorithm on ``[N, K, K]`` symmetric weights, vectorised over N.

    Edges are compared by the key ``(w_ij, i, j)`` (i < j), a strict total order, so the
    result is the unique tree that is minimal in that order: an MST by weight and, among
    tied MSTs, the one Kruskal's algorithm returns when it scans the edges sorted by
    weight, then by (i, j). K - 1 steps of O(K) float work per graph (no sorting); the
    diagonal is never read. Every node v keeps the key (best[v], code[v]) of its
    cheapest edge to the tree (code = min(i, j) * K + max(i, j)); a step takes the node
    with the smallest key and relaxes the keys of the others with the new node's row.
    Written with float arithmetic only (sign, minimum, index_select): boolean masks and
    integer reductions are several times slower on CPU.

    Returns ``parent [N, K]`` (the tree edge of node v >= 1 is (v, parent[v]);
    parent[0] = 0) and ``order [N, K]`` (order[:, s] = the node added at step s;
    order[:, 0] = 0, so a node's parent is always added before it). A graph with NaN
    weights gets an arbitrary tree of valid indices.
    """
    n, k = s.shape[0], s.shape[-1]
    dev = s.device
    cdt = s.dtype if s.dtype in (torch.float32, torch.float64) else torch.float32
    if k > 2000:  # codes (<= 4 K^2 + 1 below) must be exact integers in cdt
        cdt = torch.float64
    s = s.to(cdt)
    flat = s.reshape(n * k, k)
    rows = torch.arange(n, device=dev)
    base = rows * k
    nodes = torch.arange(k, device=dev)
    codes = torch.minimum(nodes[:, None], nodes) * k + torch.maximum(nodes[:, None], nodes)
    codes = codes.to(cdt)
    big = float(k * k)  # every code is < big
    inf = float("inf")
    # State of each node: best weight / code of its cheapest edge to the tree. Tree
    # nodes are pinned to (+inf, 2 big); pen / pen_code mask their columns when a new
    # row is read (+inf / 2 big on tree nodes, -inf / -1 elsewhere).
    best = s[:, 0, :].clone()
    code = codes[0].expand(n, k).clone()
    pen = torch.full((n, k), -inf, dtype=cdt, device=dev)
    pen_code = torch.full((n, k), -1.0, dtype=cdt, device=dev)
    best[:, 0] = inf
    code[:, 0] = 2 * big
    pen[:, 0] = inf
    pen_code[:, 0] = 2 * big
    parent = torch.zeros(n, k, dtype=torch.long, device=dev)
    order = torch.zeros(n, k, dtype=torch.long, device=dev)
    off = torch.empty_like(best)
    sgn = torch.empty_like(best)
    row = torch.empty_like(best)
    row_code = torch.empty_like(best)
    for step in range(1, k):
        # select: smallest weight, then smallest code (codes of non-tree nodes < big)
        low = best.amin(1, keepdim=True)
        torch.sub(best, low, out=off).sign_().nan_to_num_(0.0)  # 0 on ties, else 1
        chosen = torch.add(code, off, alpha=2 * big + 1).amin(1).long()
        a = torch.div(chosen, k, rounding_mode="floor")
        b = chosen - a * k
        v = torch.where(pen.view(-1)[base + a] > 0, b, a)  # the endpoint not in the tree
        order[:, step] = v
        parent[rows, v] = a + b - v
        idx = base + v
        pen.view(-1).index_fill_(0, idx, inf)
        pen_code.view(-1).index_fill_(0, idx, 2 * big)
        best.view(-1).index_fill_(0, idx, inf)
        code.view(-1).index_fill_(0, idx, 2 * big)
        # relax with the row of v: lexicographic min of (best, code) and (row, row_code)
        torch.maximum(flat.index_select(0, idx), pen, out=row)
        torch.maximum(codes.index_select(0, v), pen_code, out=row_code)
        torch.sub(row, best, out=sgn).sign_().nan_to_num_(0.0)  # inf - inf: a tie
        # sgn = -1: take row_code; +1: keep code; 0: the smaller. Shift the loser up
        # and the winner down by big, take the min, undo the shift (exact integers).
        torch.add(row_code, sgn, alpha=big, out=row_code)
        torch.sub(code, sgn, alpha=big, out=code)
        torch.minimum(code, row_code, out=code)
        code.add_(sgn.abs_(), alpha=big)
        torch.minimum(best, row, out=best)
    return parent, order


def _prim_fake(costs):
    n, k = costs.shape[0], costs.shape[1]
    return (
        costs.new_empty(n, k, dtype=torch.long),
        costs.new_empty(n, k, dtype=torch.long),
        costs.new_empty(n, k, k),
    )


def _prim_samples(device, dtype):
    """Argument tuples of the op for the generic native-op tests."""
    g = torch.Generator().manual_seed(0)
    w = torch.rand(4, 6, 6, generator=g, dtype=torch.float64)
    ties = torch.randint(0, 3, (3, 5, 5), generator=g).to(torch.float64)
    inf = (w + w.mT).clone()
    inf[0, 1, 4] = inf[2, 0, 5] = torch.inf
    inf[3, 2, 1] = -torch.inf
    return [
        ((w + w.mT).to(device, dtype),),
        (w.to(device, dtype),),  # asymmetric: min(W, W^T)
        ((ties + ties.mT).to(device, dtype),),
        (inf.to(device, dtype),),
        (torch.zeros(0, 3, 3, dtype=dtype, device=device),),
    ]


_MST_PRIM = NativeOp("mst_prim", reference=_prim_torch, fake=_prim_fake, samples=_prim_samples)


def _adjacency(parent: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[N, K, K]`` symmetric 0/1 adjacency of the tree given by ``parent``."""
    n, k = parent.shape
    flat = torch.zeros(n * k * k, dtype=dtype, device=parent.device)
    base = torch.arange(n, device=parent.device)[:, None] * (k * k)
    child = torch.arange(1, k, device=parent.device)
    par = parent[:, 1:]
    flat.index_fill_(0, (base + child * k + par).reshape(-1), 1.0)  # (v, parent[v])
    flat.index_fill_(0, (base + par * k + child).reshape(-1), 1.0)  # (parent[v], v)
    return flat.view(n, k, k)


def _ancestors(parent: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``anc [N, K, K]`` float64: anc[n, v, t] = 1 iff tree edge (t, parent[t]) (t >= 1)
    lies on the path from v to the root 0, i.e. t is v or one of its ancestors."""
    n, k = parent.shape
    rows = torch.arange(n, device=parent.device)
    anc = torch.zeros(n, k, k, dtype=torch.float64, device=parent.device)
    for step in range(1, k):
        v = order[:, step]
        p = parent[rows, v]
        anc[rows, v] = anc[rows, p]
        anc[rows, v, v] = 1.0
    return anc


def _relative_scale(w: torch.Tensor) -> torch.Tensor:
    """``[N]`` detached typical magnitude of the ``[N, E]`` edge costs: the mean gap above
    the minimum, ``mean_e(w_e) - min_e(w_e)``, over the finite costs only (1 where they
    are all equal, or none is finite). So ``±inf`` costs (edges that must not, or must,
    be taken) do not make the temperature or the noise infinite."""
    w = w.detach()
    finite = torch.isfinite(w)
    count = finite.sum(1)
    zero = torch.zeros_like(w)
    mean = torch.where(finite, w, zero).sum(1) / count.clamp_min(1)
    low = torch.where(finite, w, torch.full_like(w, torch.inf)).amin(1)
    scale = mean - low
    ok = (count > 0) & (scale > 0) & torch.isfinite(scale)
    return torch.where(ok, scale, torch.ones_like(scale))


def _soft(
    s: torch.Tensor,
    tau: torch.Tensor,
    tree: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Gibbs edge marginals of ``[N, K, K]`` symmetric weights at the absolute
    temperatures ``tau [N]`` (no gradient), as float64 ``[N, K, K]``. ``tree`` is the
    ``(parent, order)`` of an MST of ``s`` if already known.

    Matrix-tree theorem in the edge basis of the MST T* (see docs/mst.md): with
    u_e = sqrt(a_e) D^{-1/2} c_e (c_e = the path of e in T*, D = diag of the T* edge
    conductances, a_e = exp(-w_e / tau)), the reduced Laplacian is congruent to
    Q = sum_e u_e u_e^T >= I and mu_e = u_e^T Q^{-1} u_e. Every entry of u_e is
    +-exp(-(w_e - w_t) / (2 tau)) with w_t <= w_e (cycle property), in [0, 1].
    """
    n, k = s.shape[0], s.shape[-1]
    s64 = s.to(torch.float64)
    iu, ju = torch.triu_indices(k, k, 1, device=s.device)
    w = s64[:, iu, ju]  # [N, E]
    rows = torch.arange(n, device=s.device)
    with torch.no_grad():
        parent, order = _prim(s64.detach())[:2] if tree is None else tree
        tau = tau.to(torch.float64)
        anc = _ancestors(parent, order)[:, :, 1:]  # [N, K, K-1]
        c = (anc[:, iu] - anc[:, ju]).transpose(1, 2)  # [N, K-1, E], in {-1, 0, 1}
    w_tree = s64[rows[:, None], torch.arange(1, k, device=s.device), parent[:, 1:]]
    x = (w_tree[:, :, None] - w[:, None, :]) / (2.0 * tau[:, None, None])
    # x <= 0 wherever c != 0 (cycle property); the clamp only tames the entries that
    # c zeroes (and passes the full gradient at x = 0, unlike torch.minimum)
    u = c * torch.exp(x.clamp(max=0.0))  # [N, K-1, E]
    q = u @ u.transpose(1, 2)  # [N, K-1, K-1], q >= I
    chol, _ = torch.linalg.cholesky_ex(q)
    z = torch.linalg.solve_triangular(chol, u, upper=False)
    mu = (z * z).sum(1)  # [N, E]
    out = s64.new_zeros(n, k, k)
    out[:, iu, ju] = mu
    return out + out.transpose(1, 2)


class _StraightThrough(torch.autograd.Function):
    """Forward: ``hard``; backward: the incoming gradient goes to ``soft`` unchanged."""

    @staticmethod
    def forward(ctx, hard, soft):
        return hard.clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


class _PerturbedMST(torch.autograd.Function):
    """Berthet et al. (2020): y = mean_s MST(w + sigma Z_s), with the Monte-Carlo
    estimate of d/dw E[MST(w + sigma Z)] = E[MST(w + sigma Z) Z^T] / sigma."""

    @staticmethod
    def forward(ctx, w, noise, sigma, k):
        # w [N, E], noise [S, N, E], sigma [N]
        num, n, e = noise.shape
        pert = w[None] + sigma[None, :, None] * noise  # [S, N, E]
        iu, ju = torch.triu_indices(k, k, 1, device=w.device)
        full = w.new_zeros(num * n, k, k)
        full[:, iu, ju] = pert.reshape(num * n, e)
        full = full + full.transpose(1, 2)
        y = _prim(full)[2][:, iu, ju].reshape(num, n, e)
        ctx.save_for_backward(y, noise, sigma, torch.isfinite(w))
        return y.mean(0)

    @staticmethod
    def backward(ctx, grad):
        y, noise, sigma, finite = ctx.saved_tensors
        dot = (y * grad[None]).sum(-1, keepdim=True)  # [S, N, 1]
        g = (dot * noise).mean(0) / sigma[:, None]
        # an infinite cost stays infinite under the noise, so the trees do not depend on
        # its noise: its exact expected gradient is 0 (the estimate would only add noise)
        return torch.where(finite, g, 0.0), None, None, None


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------


def dmst(
    costs: torch.Tensor,
    *,
    relaxation: str = "ste",
    temperature: float = 0.1,
    num_samples: int = 32,
    noise_scale: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Differentiable minimum spanning tree of a batch of complete weighted graphs.

    The graph on K nodes has edge (i, j) of cost ``w_ij``; the result is the
    adjacency of its minimum spanning tree (MST), relaxed according to ``relaxation``:

    - ``"hard"``: the exact MST, as 0/1 adjacency. Prim's algorithm (a native CPU
      kernel when built, else vectorised over the batch in torch): K - 1 steps of
      O(K) work per graph, **O(K^2) per tree**. Edges are
      compared by ``(w_ij, i, j)`` with i < j, so ties go to the lowest index pair: the
      tree is the one Kruskal's algorithm returns scanning edges sorted by weight, then
      row-major, and a deterministic function of the input. It depends only on the
      order of the costs (invariant to any strictly increasing transform). Its total
      weight equals ``scipy.sparse.csgraph.minimum_spanning_tree``'s (note that scipy
      reads zero entries as missing edges; here every off-diagonal entry is an edge).
      Accepts ``±inf`` costs. Not differentiable (the output has no gradient).
    - ``"soft"``: the edge marginals :math:`\mu_{ij} = P(ij \in T)` of the Gibbs
      distribution :math:`p(T) \propto \exp(-w(T)/\tau)` over spanning trees, from the
      matrix-tree theorem, computed in float64 in the edge basis of the MST, where the
      reduced Laplacian is well conditioned at every temperature (``docs/mst.md``):
      accurate for every ``temperature > 0``, no NaN, no overflow. Symmetric, zero
      diagonal, entries in [0, 1], :math:`\sum_{i<j} \mu_{ij} = K - 1`; tends to the
      MST as ``temperature -> 0`` (with tied MSTs, to their average). O(K^4) flops
      (BLAS) and O(K^3) memory per graph. Differentiable (autograd through Cholesky).
    - ``"ste"`` (default): forward = ``"hard"`` exactly; backward = the gradient of
      ``"soft"`` at ``temperature`` (straight-through). The soft relaxation is only
      computed when a gradient is needed.
    - ``"perturbed"``: Berthet et al. (2020),
      :math:`y = \frac1S\sum_s \mathrm{MST}(w + \sigma Z_s)`, Z standard Gaussian on the
      edges (i < j, mirrored), with gradient
      :math:`\frac{1}{\sigma S}\sum_s \langle g, \mathrm{MST}(w+\sigma Z_s)\rangle Z_s`
      (unbiased for the gradient of the smoothed :math:`E_Z[\mathrm{MST}(w+\sigma Z)]`).
      Reproducible with ``generator``. Costs ``num_samples`` hard trees.

    **Relative temperature and noise.** ``temperature`` and ``noise_scale`` are relative
    to the scale of each graph's costs: :math:`\tau = \text{temperature}\cdot m`,
    :math:`\sigma = \text{noise\_scale}\cdot m`, with the detached
    :math:`m = \operatorname{mean}_{i<j} w_{ij} - \min_{i<j} w_{ij}` (the mean gap above
    the minimum; 1 if all costs are equal). So ``soft`` and ``ste`` are invariant to
    :math:`w \to a w + b` (a > 0) and one default works while limb variances shrink
    during training.

    **Input policy.** ``costs`` must be floating ``[..., K, K]`` with K >= 1; any
    leading dims are batch dims. The diagonal is ignored (it may hold anything). An
    asymmetric matrix is read as the undirected graph whose edge (i, j) costs
    :math:`\min(w_{ij}, w_{ji})` (scipy's rule for directed input; a symmetric matrix is
    used bit for bit), so results are equivariant under node relabelling; the gradient
    of an edge goes to the cheaper of its two entries (both halves on a tie, as
    ``torch.minimum`` splits it). A graph
    with a NaN off-diagonal cost gives an all-NaN output (other graphs of the batch
    are unaffected). Infinite costs: ``hard``, the ``ste`` forward and ``perturbed``
    accept ``±inf`` (an infinite cost stays infinite under the noise, is taken exactly
    when the exact tree takes it, and gets a zero gradient; temperature and noise scale
    are relative to the finite costs only); ``soft`` and the ``ste`` gradient accept
    ``+inf`` on edges outside the tree (marginal and gradient 0) and give NaN for
    ``-inf``, or ``+inf`` on a tree edge (a graph that needs one to be connected).
    K = 1 gives ``[[0]]``; K = 2 the single edge.

    Args:
        costs: ``[..., K, K]`` edge costs (float16/bfloat16/float32/float64).
        relaxation: ``"ste"`` (default), ``"hard"``, ``"soft"`` or ``"perturbed"``.
        temperature: relative temperature of ``"soft"`` / ``"ste"``, > 0.
        num_samples: number of noise samples of ``"perturbed"``, >= 1.
        noise_scale: relative noise scale of ``"perturbed"``, > 0.
        generator: ``torch.Generator`` for the noise of ``"perturbed"`` (on the device
            of ``costs``); ``None`` uses the global RNG.

    Returns:
        ``[..., K, K]`` symmetric adjacency with zero diagonal, in the dtype of
        ``costs``: 0/1 for ``"hard"``/``"ste"``, edge marginals in [0, 1] for
        ``"soft"``, frequencies in [0, 1] for ``"perturbed"``. Each graph's entries
        above the diagonal sum to K - 1.

    Example:
        >>> import torch
        >>> from torch_artic import dmst
        >>> w = torch.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
        >>> dmst(w, relaxation="hard")
        tensor([[0., 1., 0.],
                [1., 0., 1.],
                [0., 1., 0.]])
        >>> w = w.requires_grad_()
        >>> loss = (dmst(w) * w).sum() / 2  # weight of the MST, gradient from "soft"
        >>> loss.backward()
    """
    check_tensor(costs, "costs")
    check_shape(
        costs,
        "costs",
        "[..., K, K] with K >= 1",
        costs.dim() >= 2 and costs.shape[-1] == costs.shape[-2] and costs.shape[-1] >= 1,
    )
    if not isinstance(relaxation, str) or relaxation not in RELAXATIONS:
        raise ValueError(
            f"`relaxation` must be one of {', '.join(map(repr, RELAXATIONS))}, got {relaxation!r}"
        )
    temperature = check_positive(temperature, "temperature")
    noise_scale = check_positive(noise_scale, "noise_scale")
    check_int(num_samples, "num_samples", 1)
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a torch.Generator or None, got {type(generator).__name__}"
            )
        if generator.device.type != costs.device.type:
            raise ValueError(
                f"`generator` must be on the device of `costs` ({costs.device}), "
                f"got {generator.device}"
            )

    batch = costs.shape[:-2]
    k = costs.shape[-1]
    if k == 1 or costs.numel() == 0:
        return torch.zeros_like(costs)
    flat = costs.reshape(-1, k, k)
    if relaxation == "hard" or (
        relaxation == "ste" and not (torch.is_grad_enabled() and costs.requires_grad)
    ):
        # the exact tree only: one native call (symmetrisation and NaN check inside)
        with torch.no_grad():
            return _prim(flat.detach())[2].reshape(*batch, k, k)
    s = _symmetrize(flat)
    s.diagonal(dim1=1, dim2=2).zero_()  # ignored: never read, and no NaN from there
    n = s.shape[0]

    iu, ju = torch.triu_indices(k, k, 1, device=s.device)
    if relaxation == "perturbed":
        cdt = torch.promote_types(s.dtype, torch.float32)
        w = s.to(cdt)[:, iu, ju]
        sigma = noise_scale * _relative_scale(w)
        noise = torch.randn(
            num_samples, n, w.shape[1], generator=generator, device=s.device, dtype=cdt
        )
        y = _PerturbedMST.apply(w, noise, sigma, k)
        out = w.new_zeros(n, k, k)
        out[:, iu, ju] = y
        out = (out + out.transpose(1, 2)).to(costs.dtype)
    else:
        with torch.no_grad():
            parent, order, hard = _prim(s.detach())
        tau = temperature * _relative_scale(s[:, iu, ju].to(torch.float64))
        out = _soft(s, tau, (parent, order)).to(costs.dtype)
        if relaxation == "ste":  # (the exact tree is NaN for a NaN graph already)
            return _StraightThrough.apply(hard, out).reshape(*batch, k, k)
    # NaN in -> NaN out, per graph (float arithmetic: cheaper than a boolean where)
    nan = torch.where(_nan_graphs(s.detach()), float("nan"), 0.0).to(out.dtype)
    return (out + nan[:, None, None]).reshape(*batch, k, k)
