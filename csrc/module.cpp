// The importable module `torch_artic._C`.
//
// Importing it loads this shared library, whose static initialisers
// (STABLE_TORCH_LIBRARY_FRAGMENT / _IMPL in each op folder) register the op schemas and
// kernels in the `torch_artic` namespace; the ops are then `torch.ops.torch_artic.*`.
// Its one Python function, kernels(), lists the registered kernels with their dtypes
// (see common/kernels.h). Only the limited C API is used (Py_LIMITED_API, set by
// setup.py), so the binary is an abi3 one.
#include <Python.h>

#include "common/kernels.h"

namespace {

// kernels() -> [(op, device, (dtype, ...)), ...]
PyObject* kernels(PyObject* /*self*/, PyObject* /*args*/) {
  const auto& table = torch_artic::kernel_table();
  PyObject* out = PyList_New(static_cast<Py_ssize_t>(table.size()));
  if (out == nullptr) return nullptr;
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& k = table[i];
    PyObject* dtypes = PyTuple_New(static_cast<Py_ssize_t>(k.dtypes.size()));
    if (dtypes == nullptr) {
      Py_DECREF(out);
      return nullptr;
    }
    for (size_t j = 0; j < k.dtypes.size(); ++j) {
      PyTuple_SetItem(dtypes, static_cast<Py_ssize_t>(j),
                      PyUnicode_FromString(torch_artic::dtype_name(k.dtypes[j])));
    }
    PyObject* item = Py_BuildValue("(ssN)", k.op.c_str(), k.device.c_str(), dtypes);
    if (item == nullptr) {
      Py_DECREF(out);
      return nullptr;
    }
    PyList_SetItem(out, static_cast<Py_ssize_t>(i), item);
  }
  return out;
}

PyMethodDef methods[] = {
    {"kernels", kernels, METH_NOARGS,
     "kernels() -> list of (op, device, dtypes): every native kernel registered by this "
     "library, with the dtypes it computes in."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "Native kernels of torch-artic (registered as torch.ops.torch_artic.*).",
      -1,
      methods,
  };
  return PyModule_Create(&module_def);
}
}
