// mst_prim: exact minimum spanning trees of a batch of dense graphs.
//
// Prim's algorithm, O(K^2) per graph. Edges are compared by the key
// (c_ij, min(i, j) * K + max(i, j)): a strict total order, so the tree is unique (the one
// Kruskal's algorithm returns scanning edges by cost, then row-major) and identical to
// the pure-torch Prim in torch_artic/mst.py. The diagonal is never read. Graphs with NaN
// costs get some valid tree (the Python side turns their output into NaN).
// Returns parent [N, K] (the tree edge of node v >= 1 is (v, parent[v]); parent[0] = 0)
// and order [N, K] (the node added at each step; order[:, 0] = 0).
#pragma once

#include "common/math.h"
#include "common/stable.h"

namespace torch_artic {
namespace mst {

constexpr const char* kOp = "mst_prim";

// Lexicographic "a < b" on (cost, code) keys, written with selects only (no
// data-dependent branches: the comparisons are unpredictable).
template <typename T>
TA_HD bool key_less(T ca, int64_t ka, T cb, int64_t kb) {
  return (ca < cb) | ((ca == cb) & (ka < kb));
}

// The code of the pair (u, v).
TA_HD int64_t pair_code(int64_t u, int64_t v, int64_t K) {
  return u < v ? u * K + v : v * K + u;
}

inline void check_args(const Tensor& costs) {
  TA_CHECK(costs.dim() == 3 && costs.size(1) == costs.size(2), kOp,
           "`costs` must have shape [N, K, K], got ", shape_str(costs));
  check_tensor_arg(kOp, costs, "costs", costs, "costs", costs.scalar_type());
}

}  // namespace mst
}  // namespace torch_artic
