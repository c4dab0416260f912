// mst_prim: exact minimum spanning trees of a batch of dense graphs.
//
// Prim's algorithm, O(K^2) per graph. The graph of costs w [K, K] is read as the
// undirected graph whose edge (i, j) costs min(w_ij, w_ji) (scipy's rule for directed
// input; a symmetric matrix is used as it is); the diagonal is never read. Edges are
// compared by the key (cost, min(i, j) * K + max(i, j)): a strict total order, so the
// tree is unique (the one Kruskal's algorithm returns scanning edges by cost, then
// row-major) and identical to the pure-torch Prim in torch_artic/mst.py. Every pair is
// read exactly once (when the first of its two nodes joins the tree), which is also
// where a NaN cost is noticed.
// Returns parent [N, K] (the tree edge of node v >= 1 is (v, parent[v]); parent[0] = 0),
// order [N, K] (the node added at each step; order[:, 0] = 0) and the 0/1 adjacency
// [N, K, K] in the dtype of the costs, all NaN for a graph with a NaN off-diagonal cost
// (its parent and order are then some valid tree).
#pragma once

#include "common/math.h"
#include "common/stable.h"

#include <cstdint>
#include <cstring>

namespace torch_artic {
namespace mst {

constexpr const char* kOp = "mst_prim";
// Pair codes min(i, j) * K + max(i, j) must fit in 32 bits.
constexpr int64_t kMaxNodes = 65535;

// The code of the pair (u, v).
TA_HD int64_t pair_code(int64_t u, int64_t v, int64_t K) {
  return u < v ? u * K + v : v * K + u;
}

// The cost of the undirected edge (u, v): the cheaper direction (NaN if either is NaN).
template <typename T>
TA_HD T edge_cost(T uv, T vu) {
  return (uv != uv || vu != vu) ? uv + vu : (uv < vu ? uv : vu);
}

// Keys that order edges by (cost, code) as one unsigned integer: the cost's bits mapped
// to an order-preserving unsigned integer (negative numbers bit-flipped, positive ones
// with the sign bit set), the code below them. float -> 64 bits, double -> 128 bits.
template <typename T>
struct Key;

template <>
struct Key<float> {
  using type = uint64_t;
  static inline type make(float c, int64_t code) {
    c = c + 0.0f;  // -0 and +0 are equal costs: one key (ties go to the code)
    uint32_t u;
    std::memcpy(&u, &c, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (static_cast<uint64_t>(u) << 32) | static_cast<uint64_t>(code);
  }
};

template <>
struct Key<double> {
  using type = unsigned __int128;
  static inline type make(double c, int64_t code) {
    c = c + 0.0;  // -0 and +0 are equal costs: one key (ties go to the code)
    uint64_t u;
    std::memcpy(&u, &c, sizeof u);
    u = (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
    return (static_cast<type>(u) << 64) | static_cast<type>(static_cast<uint64_t>(code));
  }
};

inline void check_args(const Tensor& costs) {
  TA_CHECK(costs.dim() == 3 && costs.size(1) == costs.size(2), kOp,
           "`costs` must have shape [N, K, K], got ", shape_str(costs));
  check_tensor_arg(kOp, costs, "costs", costs, "costs", costs.scalar_type());
  TA_CHECK(costs.size(1) <= kMaxNodes, kOp, "`costs` must have K <= ", kMaxNodes,
           " nodes, got ", costs.size(1));
}

}  // namespace mst
}  // namespace torch_artic
