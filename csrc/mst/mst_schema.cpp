// Schema of the mst_prim op (backend-neutral; the CPU kernel implements it).
#include "common/stable.h"

STABLE_TORCH_LIBRARY_FRAGMENT(torch_artic, m) {
  m.def("mst_prim(Tensor costs) -> (Tensor parent, Tensor order, Tensor adjacency)");
}
