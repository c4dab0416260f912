// mst_prim: exact minimum spanning trees of a batch of dense graphs (CPU).
//
// Prim's algorithm, O(K^2) per graph, graphs in parallel on torch's thread pool.
// Edges are compared by the key (w_ij, min(i, j) * K + max(i, j)): a strict total
// order, so the tree is unique (the one Kruskal's algorithm returns scanning edges by
// weight, then row-major) and identical to the pure-torch Prim in torch_artic/mst.py.
// The diagonal is never read. Graphs with NaN weights get some valid tree (the Python
// side turns their output into NaN). Each graph is handled by one thread: results do
// not depend on the thread count. No CUDA kernel: on GPU the batched torch version runs.
#include "common/stable.h"

#include <tuple>

namespace torch_artic {
namespace {

// Lexicographic "a < b" on (weight, code) keys, written with selects only (no
// data-dependent branches: the comparisons are unpredictable).
template <typename T>
inline bool key_less(T wa, int64_t ca, T wb, int64_t cb) {
  return (wa < wb) | ((wa == wb) & (ca < cb));
}

template <typename T>
void prim_graphs(const T* w, int64_t N, int64_t K, int64_t* parent, int64_t* order) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(K * K, 1));
  torch::stable::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    // The nodes not yet in the tree, compacted, with their best key to the tree and
    // the tree node giving it (swap-remove keeps the arrays dense).
    std::vector<T> best(static_cast<size_t>(K));
    std::vector<int64_t> code(static_cast<size_t>(K)), bpar(static_cast<size_t>(K)),
        node(static_cast<size_t>(K));
    for (int64_t n = begin; n < end; ++n) {
      const T* s = w + n * K * K;
      int64_t* par = parent + n * K;
      int64_t* ord = order + n * K;
      int64_t rem = K - 1;
      for (int64_t r = 0; r < rem; ++r) {
        node[r] = r + 1;
        best[r] = s[r + 1];  // row 0
        code[r] = r + 1;     // pair (0, v): 0 * K + v
        bpar[r] = 0;
      }
      par[0] = 0;
      ord[0] = 0;
      for (int64_t step = 1; step < K; ++step) {
        int64_t bi = 0;
        T bw = best[0];
        int64_t bc = code[0];
        for (int64_t r = 1; r < rem; ++r) {
          const bool lt = key_less(best[r], code[r], bw, bc);
          bi = lt ? r : bi;
          bw = lt ? best[r] : bw;
          bc = lt ? code[r] : bc;
        }
        const int64_t sel = node[bi];
        ord[step] = sel;
        par[sel] = bpar[bi];
        --rem;
        node[bi] = node[rem];
        best[bi] = best[rem];
        code[bi] = code[rem];
        bpar[bi] = bpar[rem];
        const T* row = s + sel * K;
        for (int64_t r = 0; r < rem; ++r) {
          const int64_t u = node[r];
          const T c = row[u];
          const int64_t cc = sel < u ? sel * K + u : u * K + sel;
          const bool lt = key_less(c, cc, best[r], code[r]);
          best[r] = lt ? c : best[r];
          code[r] = lt ? cc : code[r];
          bpar[r] = lt ? sel : bpar[r];
        }
      }
    }
  });
}

std::tuple<Tensor, Tensor> mst_prim_cpu(const Tensor& weights) {
  STD_TORCH_CHECK(weights.dim() == 3 && weights.size(1) == weights.size(2),
                  "weights must be [N, K, K]");
  STD_TORCH_CHECK(weights.is_contiguous(), "weights must be contiguous");
  const int64_t N = weights.size(0), K = weights.size(1);
  Tensor parent = torch::stable::new_empty(weights, {N, K}, ScalarType::Long);
  Tensor order = torch::stable::new_empty(weights, {N, K}, ScalarType::Long);
  if (N == 0 || K == 0) return {parent, order};
  int64_t* p = parent.mutable_data_ptr<int64_t>();
  int64_t* o = order.mutable_data_ptr<int64_t>();
  if (weights.scalar_type() == ScalarType::Double) {
    prim_graphs<double>(weights.const_data_ptr<double>(), N, K, p, o);
  } else {
    STD_TORCH_CHECK(weights.scalar_type() == ScalarType::Float,
                    "mst_prim supports float32 and float64");
    prim_graphs<float>(weights.const_data_ptr<float>(), N, K, p, o);
  }
  return {parent, order};
}

}  // namespace
}  // namespace torch_artic

STABLE_TORCH_LIBRARY_FRAGMENT(torch_artic, m) {
  m.def("mst_prim(Tensor weights) -> (Tensor parent, Tensor order)");
}

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m) {
  m.impl("mst_prim", TORCH_BOX(&torch_artic::mst_prim_cpu));
}
