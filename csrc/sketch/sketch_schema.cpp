// Schemas of the sketch_render ops (backend-neutral: the CPU and CUDA kernels register
// implementations of these).
#include "common/stable.h"

STABLE_TORCH_LIBRARY_FRAGMENT(torch_artic, m) {
  m.def(
      "sketch_render_forward(Tensor points, Tensor strength, Tensor sigma, Tensor? colors, "
      "int height, int width, str composite, float cutoff, bool keep_state) "
      "-> (Tensor image, Tensor state, Tensor state_index)");
  m.def(
      "sketch_render_backward(Tensor grad, Tensor points, Tensor strength, Tensor sigma, "
      "Tensor? colors, Tensor state, Tensor state_index, int height, int width, "
      "str composite, float cutoff, "
      "bool need_strength, bool need_sigma, bool need_colors) "
      "-> (Tensor grad_points, Tensor grad_strength, Tensor grad_sigma, Tensor grad_colors)");
}
