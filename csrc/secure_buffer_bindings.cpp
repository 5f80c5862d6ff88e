// edgeguard._core.SecureBuffer: a SecureRegion exposed through the Python buffer protocol.
//
// Lifetime rule: close() wipes and unlocks at once, but the pages are unmapped only when the object
// itself is freed. Every memoryview / numpy view holds a reference to the object, and the runtime
// keeps one for as long as onnxruntime reads the weights in place, so no reader can ever touch an
// unmapped page: after close() it reads zeros, and what it writes is wiped when it is released.
// The type is written against the CPython API because pybind11's buffer support cannot count
// outstanding exports or refuse writable ones.
#include <Python.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <new>
#include <system_error>

#include "secure_buffer.h"

namespace py = pybind11;

namespace {

struct SecureBufferObject {
  PyObject_HEAD
  edgeguard::SecureRegion* region;
  Py_ssize_t exports;
  bool closed;
  bool readonly;
};

SecureBufferObject* self_of(PyObject* o) { return reinterpret_cast<SecureBufferObject*>(o); }

PyObject* sb_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
  static const char* kwlist[] = {"size", nullptr};
  Py_ssize_t size = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", const_cast<char**>(kwlist), &size)) return nullptr;
  if (size < 0) {
    PyErr_SetString(PyExc_ValueError, "size must be non-negative");
    return nullptr;
  }
  PyObject* obj = type->tp_alloc(type, 0);
  if (obj == nullptr) return nullptr;
  SecureBufferObject* self = self_of(obj);
  self->exports = 0;
  self->closed = false;
  self->readonly = false;
  try {
    self->region = new edgeguard::SecureRegion(static_cast<size_t>(size));
  } catch (const std::system_error& e) {
    self->region = nullptr;
    Py_DECREF(obj);
    errno = e.code().value();
    PyErr_SetFromErrno(PyExc_MemoryError);
    return nullptr;
  } catch (const std::bad_alloc&) {
    self->region = nullptr;
    Py_DECREF(obj);
    return PyErr_NoMemory();
  }
  return obj;
}

void sb_dealloc(PyObject* obj) {
  SecureBufferObject* self = self_of(obj);
  delete self->region;  // wipes, unlocks, unmaps
  PyTypeObject* type = Py_TYPE(obj);
  type->tp_free(obj);
  Py_DECREF(type);
}

int sb_getbuffer(PyObject* obj, Py_buffer* view, int flags) {
  SecureBufferObject* self = self_of(obj);
  if (self->closed) {
    PyErr_SetString(PyExc_BufferError, "secure buffer is closed");
    return -1;
  }
  if (self->readonly && (flags & PyBUF_WRITABLE)) {
    PyErr_SetString(PyExc_BufferError, "secure buffer is read-only");
    return -1;
  }
  if (PyBuffer_FillInfo(view, obj, self->region->data(), static_cast<Py_ssize_t>(self->region->size()),
                        self->readonly ? 1 : 0, flags) != 0)
    return -1;
  ++self->exports;
  return 0;
}

// A writable view taken before close() (a memoryview, or the native core decrypting into the
// buffer while a progress callback or another thread closes it) can still write afterwards: wipe
// again as it is let go, so nothing written after close() outlives the writer.
void sb_releasebuffer(PyObject* obj, Py_buffer* view) {
  SecureBufferObject* self = self_of(obj);
  --self->exports;
  if (self->closed && !view->readonly) self->region->wipe();
}

Py_ssize_t sb_len(PyObject* obj) { return static_cast<Py_ssize_t>(self_of(obj)->region->size()); }

PyObject* sb_close(PyObject* obj, PyObject*) {
  SecureBufferObject* self = self_of(obj);
  self->region->wipe();
  self->closed = true;
  Py_RETURN_NONE;
}

PyObject* sb_make_readonly(PyObject* obj, PyObject*) {
  SecureBufferObject* self = self_of(obj);
  if (self->closed) {
    PyErr_SetString(PyExc_BufferError, "secure buffer is closed");
    return nullptr;
  }
  // A writable view handed out earlier would fault on its next write: refuse while one may exist.
  if (self->exports != 0) {
    PyErr_SetString(PyExc_BufferError, "secure buffer has outstanding views");
    return nullptr;
  }
  try {
    self->region->set_readonly(true);
  } catch (const std::system_error& e) {
    errno = e.code().value();
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  self->readonly = true;
  Py_RETURN_NONE;
}

PyObject* sb_enter(PyObject* obj, PyObject*) {
  Py_INCREF(obj);
  return obj;
}

PyObject* sb_exit(PyObject* obj, PyObject*) { return sb_close(obj, nullptr); }

PyObject* sb_reduce(PyObject*, PyObject*) {
  PyErr_SetString(PyExc_TypeError, "SecureBuffer holds plaintext and cannot be pickled");
  return nullptr;
}

PyObject* sb_repr(PyObject* obj) {
  SecureBufferObject* self = self_of(obj);
  return PyUnicode_FromFormat("SecureBuffer(size=%zd, locked=%s, closed=%s)",
                              static_cast<Py_ssize_t>(self->region->size()),
                              self->region->locked() ? "True" : "False", self->closed ? "True" : "False");
}

PyObject* sb_get_locked(PyObject* obj, void*) { return PyBool_FromLong(self_of(obj)->region->locked()); }

PyObject* sb_get_lock_error(PyObject* obj, void*) {
  const int err = self_of(obj)->region->lock_errno();
  if (err == 0) Py_RETURN_NONE;
  return PyUnicode_FromString(std::strerror(err));
}

PyObject* sb_get_dontdump(PyObject* obj, void*) { return PyBool_FromLong(self_of(obj)->region->dontdump()); }

PyObject* sb_get_fork_protection(PyObject* obj, void*) {
  return PyUnicode_FromString(self_of(obj)->region->fork_protection());
}

PyObject* sb_get_closed(PyObject* obj, void*) { return PyBool_FromLong(self_of(obj)->closed); }

PyObject* sb_get_readonly(PyObject* obj, void*) { return PyBool_FromLong(self_of(obj)->readonly); }

PyObject* sb_get_exports(PyObject* obj, void*) { return PyLong_FromSsize_t(self_of(obj)->exports); }

PyMethodDef sb_methods[] = {
    {"close", sb_close, METH_NOARGS, "Wipe (OPENSSL_cleanse) and unlock now; views read zeros afterwards."},
    {"make_readonly", sb_make_readonly, METH_NOARGS,
     "Write-protect the pages. Raises BufferError while views are outstanding or after close."},
    {"__enter__", sb_enter, METH_NOARGS, nullptr},
    {"__exit__", sb_exit, METH_VARARGS, nullptr},
    {"__reduce__", sb_reduce, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef sb_getset[] = {
    {"locked", sb_get_locked, nullptr, "True if mlock succeeded (and the buffer is not closed).", nullptr},
    {"lock_error", sb_get_lock_error, nullptr, "Why mlock failed (strerror), or None.", nullptr},
    {"dontdump", sb_get_dontdump, nullptr, "True if MADV_DONTDUMP applied.", nullptr},
    {"fork_protection", sb_get_fork_protection, nullptr, "'wipeonfork', 'dontfork' or 'none'.", nullptr},
    {"closed", sb_get_closed, nullptr, nullptr, nullptr},
    {"readonly", sb_get_readonly, nullptr, nullptr, nullptr},
    {"exports", sb_get_exports, nullptr, "Number of buffer views currently exported.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot sb_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(sb_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(sb_dealloc)},
    {Py_tp_repr, reinterpret_cast<void*>(sb_repr)},
    {Py_tp_methods, sb_methods},
    {Py_tp_getset, sb_getset},
    {Py_sq_length, reinterpret_cast<void*>(sb_len)},
    {Py_bf_getbuffer, reinterpret_cast<void*>(sb_getbuffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(sb_releasebuffer)},
    {Py_tp_doc, const_cast<char*>("SecureBuffer(size): page-aligned, guard-paged, non-dumpable, mlocked (best "
                                  "effort) memory, wiped on close() and on deallocation.")},
    {0, nullptr},
};

PyType_Spec sb_spec = {"edgeguard._core.SecureBuffer", sizeof(SecureBufferObject), 0, Py_TPFLAGS_DEFAULT, sb_slots};

}  // namespace

void init_secure_buffer(py::module_& m) {
  PyObject* type = PyType_FromSpec(&sb_spec);
  if (type == nullptr) throw py::error_already_set();
  m.add_object("SecureBuffer", py::reinterpret_steal<py::object>(type));
  m.def("harden_process", [] {
    const int err = edgeguard::set_non_dumpable();
    if (err != 0) {
      errno = err;
      PyErr_SetFromErrno(PyExc_OSError);
      throw py::error_already_set();
    }
  }, "prctl(PR_SET_DUMPABLE, 0). Raises OSError on failure.");
  m.def("is_dumpable", [] { return edgeguard::get_dumpable() == 1; });
  m.def("wipe_stack", &edgeguard::wipe_stack, py::arg("bytes"),
        "Zero up to `bytes` of the calling thread's stack below this call; returns the bytes wiped.");
  m.def("wipe_cached_thread_stacks", &edgeguard::wipe_cached_thread_stacks, py::arg("count"), py::arg("bytes"),
        py::call_guard<py::gil_scoped_release>(),
        "Start `count` threads at once that each zero `bytes` of their (possibly reused) stack; returns how many ran.");
  m.def("default_thread_stack_size", &edgeguard::default_thread_stack_size);
  m.def("lock_all_memory", [] {
    const int err = edgeguard::lock_all_memory();
    if (err != 0) {
      errno = err;
      PyErr_SetFromErrno(PyExc_OSError);
      throw py::error_already_set();
    }
  }, "mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT). Raises OSError on failure.");
  m.def("all_memory_locked", &edgeguard::all_memory_locked);
  m.def("set_malloc_perturb", &edgeguard::set_malloc_perturb, py::arg("byte"),
        "glibc mallopt(M_PERTURB, byte); False where unsupported.");
  m.def("malloc_perturb", &edgeguard::malloc_perturb);
}
