// The importable module `torch_artic._C`.
//
// It holds no Python functions: importing it loads this shared library, whose
// static initialisers (STABLE_TORCH_LIBRARY_FRAGMENT / _IMPL in each op folder)
// register the op schemas and kernels in the `torch_artic` namespace. The ops are
// then reached through `torch.ops.torch_artic.*`. Only the limited C API is used
// (Py_LIMITED_API, set by setup.py), so the binary is an abi3 one.
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "Native kernels of torch-artic (registered as torch.ops.torch_artic.*).",
      -1,
      nullptr,
  };
  return PyModule_Create(&module_def);
}
}
