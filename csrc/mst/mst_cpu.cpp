// CPU kernel of mst_prim (see the header): graphs in parallel on torch's thread pool,
// each graph handled by one thread, so results do not depend on the thread count. No
// CUDA kernel: on GPU the batched torch Prim of torch_artic/mst.py runs.
#include "mst/mst.h"

#include "common/kernels.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

namespace torch_artic::mst {
namespace {

template <typename T>
void prim_graphs(const T* w, int64_t N, int64_t K, int64_t* parent, int64_t* order, T* adj) {
  using KeyT = typename Key<T>::type;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(K * K, 1));
  torch::stable::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    // The nodes not yet in the tree, compacted, with the key of their cheapest edge to
    // the tree and the tree node giving it (swap-remove keeps the arrays dense).
    std::vector<KeyT> key(static_cast<size_t>(K));
    std::vector<int64_t> bpar(static_cast<size_t>(K)), node(static_cast<size_t>(K));
    for (int64_t n = begin; n < end; ++n) {
      const T* s = w + n * K * K;
      int64_t* par = parent + n * K;
      int64_t* ord = order + n * K;
      T* a = adj + n * K * K;
      bool nan = false;
      int64_t rem = K - 1;
      for (int64_t r = 0; r < rem; ++r) {
        const int64_t v = r + 1;
        const T c = edge_cost(s[v], s[v * K]);  // the pair (0, v)
        nan |= c != c;
        node[r] = v;
        key[r] = Key<T>::make(c, pair_code(0, v, K));
        bpar[r] = 0;
      }
      par[0] = 0;
      ord[0] = 0;
      for (int64_t step = 1; step < K; ++step) {
        int64_t bi = 0;
        KeyT bk = key[0];
        for (int64_t r = 1; r < rem; ++r) {
          const bool lt = key[r] < bk;
          bi = lt ? r : bi;
          bk = lt ? key[r] : bk;
        }
        const int64_t sel = node[bi];
        ord[step] = sel;
        par[sel] = bpar[bi];
        --rem;
        node[bi] = node[rem];
        key[bi] = key[rem];
        bpar[bi] = bpar[rem];
        const T* row = s + sel * K;
        for (int64_t r = 0; r < rem; ++r) {
          const int64_t u = node[r];
          const T c = edge_cost(row[u], s[u * K + sel]);
          nan |= c != c;
          const KeyT k = Key<T>::make(c, pair_code(sel, u, K));
          const bool lt = k < key[r];
          key[r] = lt ? k : key[r];
          bpar[r] = lt ? sel : bpar[r];
        }
      }
      if (nan) {
        std::fill(a, a + K * K, std::numeric_limits<T>::quiet_NaN());
      } else {
        std::fill(a, a + K * K, T(0));
        for (int64_t v = 1; v < K; ++v) {
          a[v * K + par[v]] = T(1);
          a[par[v] * K + v] = T(1);
        }
      }
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> mst_prim_cpu(const Tensor& costs) {
  check_args(costs);
  const int64_t N = costs.size(0), K = costs.size(1);
  Tensor parent = empty(kOp, costs, {N, K}, ScalarType::Long, "parent");
  Tensor order = empty(kOp, costs, {N, K}, ScalarType::Long, "order");
  Tensor adjacency = empty(kOp, costs, {N, K, K}, "adjacency");
  if (N == 0 || K == 0) return {parent, order, adjacency};
  int64_t* p = parent.mutable_data_ptr<int64_t>();
  int64_t* o = order.mutable_data_ptr<int64_t>();
  dispatch_cpu_floating(kOp, costs.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    prim_graphs<T>(costs.const_data_ptr<T>(), N, K, p, o, adjacency.mutable_data_ptr<T>());
  });
  return {parent, order, adjacency};
}

}  // namespace
}  // namespace torch_artic::mst

STABLE_TORCH_LIBRARY_IMPL(torch_artic, CPU, m) {
  TA_IMPL_CPU(m, mst, kOp, mst_prim_cpu);
}
