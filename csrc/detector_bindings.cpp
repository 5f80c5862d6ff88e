// Python bindings of the extraction-query detector. Shapes are checked here; policy is in Python.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "detector.h"

namespace py = pybind11;
using namespace edgeguard::detect;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using ByteArray = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// Columns of a batch table: the statistics, risk, peak risk, first-alert flag, memory event, fleet
// risk, fleet first-alert flag, fleet statistics.
constexpr int kColumns = 2 * kSignalCount + 6;

std::vector<float> vec(const FloatArray& a, size_t n, const char* what) {
  if (static_cast<size_t>(a.size()) != n)
    throw py::value_error(std::string(what) + " must have " + std::to_string(n) + " entries");
  return std::vector<float>(a.data(), a.data() + n);
}

py::tuple stats_tuple(const std::array<float, kSignalCount>& s) {
  py::tuple t(static_cast<size_t>(kSignalCount));
  for (int j = 0; j < kSignalCount; ++j) t[j] = s[j];
  return t;
}

py::tuple as_tuple(const Result& r) {
  return py::make_tuple(r.risk, r.peak_risk, r.queries, r.first_alert, stats_tuple(r.stats), r.event,
                        r.fleet_risk, r.fleet_first_alert, stats_tuple(r.fleet_stats));
}

void row_of(const Result& r, float* row) {
  std::copy(r.stats.begin(), r.stats.end(), row);
  row[kSignalCount] = r.risk;
  row[kSignalCount + 1] = r.peak_risk;
  row[kSignalCount + 2] = r.first_alert ? 1.0f : 0.0f;
  row[kSignalCount + 3] = static_cast<float>(r.event);
  row[kSignalCount + 4] = r.fleet_risk;
  row[kSignalCount + 5] = r.fleet_first_alert ? 1.0f : 0.0f;
  std::copy(r.fleet_stats.begin(), r.fleet_stats.end(), row + kSignalCount + 6);
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

// Class scores of the wrong kind are refused before anything is recorded.
void check_kind(const Detector& d, const std::optional<FloatArray>& y, ssize_t rows) {
  if (!y) return;
  std::string err = check_scores(d.model(), y->data(), static_cast<size_t>(rows));
  if (!err.empty()) throw py::value_error(err);
}

}  // namespace

void init_detector(py::module_& m) {
  py::tuple names(static_cast<size_t>(kSignalCount));
  for (int j = 0; j < kSignalCount; ++j) names[j] = kSignalNames[j];
  m.attr("SIGNALS") = names;
  m.attr("DETECTOR_COLUMNS") = kColumns;
  py::class_<Detector>(m, "Detector")
      .def(py::init([](uint32_t dim, const std::vector<uint32_t>& input_shape, const std::vector<uint32_t>& pool,
                       uint32_t sketch_dim, uint32_t classes, uint32_t output_kind, const FloatArray& mean, const FloatArray& components,
                       const FloatArray& sketch_center, const FloatArray& sketch_scale, float lo, float hi,
                       float mahal_ref, float resid_ref, float novelty_slack, float novelty_cap, float repeat_dist,
                       float near_dist, float chain_slack, float chain_weight_cap, float low_margin,
                       float margin_slack, float invalid_decay, uint64_t salt, const std::vector<float>& thresholds,
                       const std::vector<float>& fleet_thresholds, uint32_t memory, uint32_t bloom_bits,
                       uint32_t fleet_memory, uint32_t fleet_bloom_bits, uint32_t max_clients) {
             Model mo;
             mo.dim = dim;
             mo.input_shape = input_shape;
             mo.pool = pool;
             mo.sketch_dim = sketch_dim;
             mo.classes = classes;
             mo.output_kind = output_kind;
             // Sizes are checked against the pooled feature count by validate(); read what is there.
             mo.mean = vec(mean, static_cast<size_t>(mean.size()), "mean");
             mo.components = vec(components, static_cast<size_t>(components.size()), "components");
             mo.sketch_center = vec(sketch_center, sketch_dim, "sketch_center");
             mo.sketch_scale = vec(sketch_scale, sketch_dim, "sketch_scale");
             mo.lo = lo;
             mo.hi = hi;
             mo.mahal_ref = mahal_ref;
             mo.resid_ref = resid_ref;
             mo.novelty_slack = novelty_slack;
             mo.novelty_cap = novelty_cap;
             mo.repeat_dist = repeat_dist;
             mo.near_dist = near_dist;
             mo.chain_slack = chain_slack;
             mo.chain_weight_cap = chain_weight_cap;
             mo.low_margin = low_margin;
             mo.margin_slack = margin_slack;
             mo.invalid_decay = invalid_decay;
             mo.salt = salt;
             if (thresholds.size() != kSignalCount || fleet_thresholds.size() != kSignalCount)
               throw py::value_error("thresholds must have " + std::to_string(kSignalCount) + " entries");
             std::copy(thresholds.begin(), thresholds.end(), mo.thresholds.begin());
             std::copy(fleet_thresholds.begin(), fleet_thresholds.end(), mo.fleet_thresholds.begin());
             Limits li{memory, bloom_bits, fleet_memory, fleet_bloom_bits, max_clients};
             std::string err = validate(mo, li);
             if (!err.empty()) throw py::value_error(err);
             return new Detector(std::move(mo), li);
           }),
           py::kw_only(), py::arg("dim"), py::arg("input_shape"), py::arg("pool"), py::arg("sketch_dim"),
           py::arg("classes"), py::arg("output_kind") = 0, py::arg("mean"), py::arg("components"), py::arg("sketch_center"),
           py::arg("sketch_scale"), py::arg("lo"), py::arg("hi"), py::arg("mahal_ref"), py::arg("resid_ref"),
           py::arg("novelty_slack"), py::arg("novelty_cap"), py::arg("repeat_dist"), py::arg("near_dist"),
           py::arg("chain_slack"), py::arg("chain_weight_cap"), py::arg("low_margin"), py::arg("margin_slack"),
           py::arg("invalid_decay"), py::arg("salt"), py::arg("thresholds"), py::arg("fleet_thresholds"),
           py::arg("memory"), py::arg("bloom_bits"), py::arg("fleet_memory"), py::arg("fleet_bloom_bits"),
           py::arg("max_clients"))
      // Scores one query (x: dim floats, y: classes floats or None) and returns
      // (risk, peak_risk, queries, first_alert, stats, event, fleet_risk, fleet_first_alert, fleet_stats).
      .def("observe",
           [](Detector& d, const std::string& client, const FloatArray& x, const py::object& y) {
             if (static_cast<size_t>(x.size()) != d.model().dim) throw py::value_error("x must have dim entries");
             const auto scores = scores_or_none(y, d.model().classes, 1, "y");
             check_kind(d, scores, 1);
             Result r;
             {
               py::gil_scoped_release nogil;
               r = d.observe(client, x.data(), data_or_null(scores));
             }
             return as_tuple(r);
           },
           py::arg("client"), py::arg("x"), py::arg("y"))
      // Scores rows of X in order; returns an (n, DETECTOR_COLUMNS) table (see kColumns).
      .def("observe_batch",
           [](Detector& d, const std::string& client, const FloatArray& x, const py::object& y) {
             const uint32_t dim = d.model().dim;
             if (x.ndim() != 2 || x.shape(1) != dim) throw py::value_error("X must have shape (rows, dim)");
             const ssize_t n = x.shape(0);
             const auto scores = scores_or_none(y, d.model().classes, n, "Y");
             check_kind(d, scores, n);
             const float* yp = data_or_null(scores);
             py::array_t<float> out(std::vector<ssize_t>{n, static_cast<ssize_t>(kColumns)});
             float* o = out.mutable_data();
             const uint32_t classes = d.model().classes;
             {
               py::gil_scoped_release nogil;
               for (ssize_t i = 0; i < n; ++i)
                 row_of(d.observe(client, x.data() + i * dim, yp ? yp + i * classes : nullptr), o + i * kColumns);
             }
             return out;
           },
           py::arg("client"), py::arg("X"), py::arg("Y"))
      // Calibration: queries already reduced to features. Z (n, sketch_dim) sketches, novelty (n),
      // valid (n), low_margin (n) or None (no answers). Returns the same table as observe_batch.
      .def("observe_features",
           [](Detector& d, const std::string& client, const FloatArray& z, const FloatArray& novelty,
              const ByteArray& valid, const py::object& low_margin) {
             const uint32_t k = d.model().sketch_dim;
             if (z.ndim() != 2 || z.shape(1) != k) throw py::value_error("Z must have shape (rows, sketch_dim)");
             const ssize_t n = z.shape(0);
             if (novelty.size() != n || valid.size() != n) throw py::value_error("novelty and valid need one entry per row");
             std::optional<ByteArray> lm;
             if (!low_margin.is_none()) {
               lm = ByteArray::ensure(low_margin);
               if (!*lm || lm->size() != n) throw py::value_error("low_margin needs one entry per row");
             }
             for (ssize_t i = 0; i < n; ++i)
               for (uint32_t j = 0; j < k; ++j)
                 if (!std::isfinite(z.data()[i * k + j])) throw py::value_error("Z must be finite");
             py::array_t<float> out(std::vector<ssize_t>{n, static_cast<ssize_t>(kColumns)});
             float* o = out.mutable_data();
             {
               py::gil_scoped_release nogil;
               for (ssize_t i = 0; i < n; ++i) {
                 Features f;
                 f.valid = valid.data()[i] != 0;
                 f.novelty = std::min(novelty.data()[i], d.model().novelty_cap);
                 if (!(f.novelty >= 0)) f.novelty = 0;
                 f.sketch = z.data() + i * k;
                 f.scored = lm.has_value();
                 f.low_margin = lm && lm->data()[i] != 0;
                 row_of(d.observe_features(client, f), o + i * kColumns);
               }
             }
             return out;
           },
           py::arg("client"), py::arg("Z"), py::arg("novelty"), py::arg("valid"), py::arg("low_margin"))
      .def("observe_malformed", [](Detector& d, const std::string& client) { return as_tuple(d.observe_malformed(client)); },
           py::arg("client"))
      .def("known", &Detector::known, py::arg("client"))
      .def("forget", &Detector::forget, py::arg("client"))
      .def("clients", &Detector::clients)
      .def("evictions", &Detector::evictions)
      .def("state_bytes_per_client", &Detector::state_bytes_per_client)
      .def("fleet_state_bytes", &Detector::fleet_state_bytes)
      .def("pooled_dim", &Detector::pooled_dim)
      .def("save", [](const Detector& d) { return py::bytes(d.save()); })
      .def("restore", [](Detector& d, const py::bytes& blob) {
        std::string err = d.restore(std::string(blob));
        if (!err.empty()) throw py::value_error(err);
      }, py::arg("blob"))
      .def("save_fleet", [](const Detector& d) { return py::bytes(d.save_fleet()); })
      .def("merge_fleet", [](Detector& d, const py::bytes& blob) {
        std::string err = d.merge_fleet(std::string(blob));
        if (!err.empty()) throw py::value_error(err);
      }, py::arg("blob"));
}
