// Schema of the tps_inverse op (backend-neutral; the CPU kernel implements it).
#include "common/stable.h"

STABLE_TORCH_LIBRARY_FRAGMENT(torch_artic, m) {
  m.def(
      "tps_inverse(Tensor centers, Tensor params, Tensor start_centers, Tensor start_params, "
      "Tensor targets, int max_iter) -> (Tensor state, Tensor folds)");
}
