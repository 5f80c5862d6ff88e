// Python bindings of the extraction-query detector. Shapes are checked here; policy is in Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "detector.h"

namespace py = pybind11;
using namespace edgeguard::detect;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

std::vector<float> vec(const FloatArray& a, size_t n, const char* what) {
  if (static_cast<size_t>(a.size()) != n)
    throw py::value_error(std::string(what) + " must have " + std::to_string(n) + " entries");
  return std::vector<float>(a.data(), a.data() + n);
}

py::tuple as_tuple(const Result& r) {
  py::tuple stats(static_cast<size_t>(kSignalCount));
  for (int j = 0; j < kSignalCount; ++j) stats[j] = r.stats[j];
  return py::make_tuple(r.risk, r.peak_risk, r.queries, r.first_alert, stats);
}

// Class scores as a C-contiguous float32 (rows, classes) array, converted (copied) if need be, or
// nothing. The caller keeps the returned array for as long as native code reads it: a pointer into
// a converted copy must never outlive the copy.
std::optional<FloatArray> scores_or_none(const py::object& y, uint32_t classes, ssize_t rows, const char* what) {
  if (y.is_none() || classes == 0) return std::nullopt;
  auto arr = FloatArray::ensure(y);
  if (!arr) throw py::type_error(std::string(what) + " must be convertible to a float32 array");
  if (arr.ndim() != 2 || arr.shape(0) != rows || arr.shape(1) != classes)
    throw py::value_error(std::string(what) + " must have shape (rows, classes)");
  return arr;
}

const float* data_or_null(const std::optional<FloatArray>& a) { return a ? a->data() : nullptr; }

}  // namespace

void init_detector(py::module_& m) {
  py::tuple names(static_cast<size_t>(kSignalCount));
  for (int j = 0; j < kSignalCount; ++j) names[j] = kSignalNames[j];
  m.attr("SIGNALS") = names;
  py::class_<Detector>(m, "Detector")
      .def(py::init([](uint32_t dim, uint32_t sketch_dim, uint32_t classes, const FloatArray& mean,
                       const FloatArray& components, const FloatArray& sketch_center,
                       const FloatArray& sketch_scale, const FloatArray& lo, const FloatArray& hi,
                       float mahal_ref, float resid_ref, float novelty_slack, float novelty_cap, float near_dist, float low_margin,
                       const std::vector<float>& thresholds, uint32_t window, uint32_t reservoir,
                       uint32_t max_clients) {
             Model mo;
             mo.dim = dim;
             mo.sketch_dim = sketch_dim;
             mo.classes = classes;
             mo.mean = vec(mean, dim, "mean");
             mo.components = vec(components, size_t{sketch_dim} * dim, "components");
             mo.sketch_center = vec(sketch_center, sketch_dim, "sketch_center");
             mo.sketch_scale = vec(sketch_scale, sketch_dim, "sketch_scale");
             mo.lo = vec(lo, dim, "lo");
             mo.hi = vec(hi, dim, "hi");
             mo.mahal_ref = mahal_ref;
             mo.resid_ref = resid_ref;
             mo.novelty_slack = novelty_slack;
             mo.novelty_cap = novelty_cap;
             mo.near_dist = near_dist;
             mo.low_margin = low_margin;
             if (thresholds.size() != kSignalCount) throw py::value_error("thresholds must have " + std::to_string(kSignalCount) + " entries");
             std::copy(thresholds.begin(), thresholds.end(), mo.thresholds.begin());
             Limits li{window, reservoir, max_clients};
             std::string err = validate(mo, li);
             if (!err.empty()) throw py::value_error(err);
             return new Detector(std::move(mo), li);
           }),
           py::kw_only(), py::arg("dim"), py::arg("sketch_dim"), py::arg("classes"), py::arg("mean"),
           py::arg("components"), py::arg("sketch_center"), py::arg("sketch_scale"), py::arg("lo"),
           py::arg("hi"), py::arg("mahal_ref"), py::arg("resid_ref"), py::arg("novelty_slack"),
           py::arg("novelty_cap"),
           py::arg("near_dist"), py::arg("low_margin"), py::arg("thresholds"), py::arg("window"),
           py::arg("reservoir"), py::arg("max_clients"))
      // Scores one query (x: dim floats, y: classes floats or None) and returns
      // (risk, peak_risk, queries, first_alert, stats).
      .def("observe",
           [](Detector& d, const std::string& client, const FloatArray& x, const py::object& y) {
             if (static_cast<size_t>(x.size()) != d.model().dim) throw py::value_error("x must have dim entries");
             const auto scores = scores_or_none(y, d.model().classes, 1, "y");
             Result r;
             {
               py::gil_scoped_release nogil;
               r = d.observe(client, x.data(), data_or_null(scores));
             }
             return as_tuple(r);
           },
           py::arg("client"), py::arg("x"), py::arg("y"))
      // Scores rows of X in order; returns an (n, 10) array: the 7 statistics, risk, peak risk,
      // first-alert flag.
      .def("observe_batch",
           [](Detector& d, const std::string& client, const FloatArray& x, const py::object& y) {
             const uint32_t dim = d.model().dim;
             if (x.ndim() != 2 || x.shape(1) != dim) throw py::value_error("X must have shape (rows, dim)");
             const ssize_t n = x.shape(0);
             const auto scores = scores_or_none(y, d.model().classes, n, "Y");
             const float* yp = data_or_null(scores);
             py::array_t<float> out(std::vector<ssize_t>{n, static_cast<ssize_t>(kSignalCount + 3)});
             float* o = out.mutable_data();
             const uint32_t classes = d.model().classes;
             {
               py::gil_scoped_release nogil;
               for (ssize_t i = 0; i < n; ++i) {
                 Result r = d.observe(client, x.data() + i * dim, yp ? yp + i * classes : nullptr);
                 float* row = o + i * (kSignalCount + 3);
                 std::copy(r.stats.begin(), r.stats.end(), row);
                 row[kSignalCount] = r.risk;
                 row[kSignalCount + 1] = r.peak_risk;
                 row[kSignalCount + 2] = r.first_alert ? 1.0f : 0.0f;
               }
             }
             return out;
           },
           py::arg("client"), py::arg("X"), py::arg("Y"))
      .def("observe_malformed", [](Detector& d, const std::string& client) { return as_tuple(d.observe_malformed(client)); },
           py::arg("client"))
      .def("known", &Detector::known, py::arg("client"))
      .def("forget", &Detector::forget, py::arg("client"))
      .def("clients", &Detector::clients)
      .def("evictions", &Detector::evictions)
      .def("state_bytes_per_client", &Detector::state_bytes_per_client)
      .def("save", [](const Detector& d) { return py::bytes(d.save()); })
      .def("restore", [](Detector& d, const py::bytes& blob) {
        std::string err = d.restore(std::string(blob));
        if (!err.empty()) throw py::value_error(err);
      }, py::arg("blob"));
}
