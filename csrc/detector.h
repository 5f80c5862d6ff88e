// Extraction-query detector: the per-query hot path, with no Python in it.
//
// A Model holds what the profile says about benign traffic (a linear sketch fitted on calibration
// data, robust statistics of it, the declared input domain and calibrated thresholds). A Detector
// keeps one fixed-size ClientState per client id in a bounded LRU, updates it for each query and
// returns the signal statistics and the client's risk (the largest statistic/threshold ratio).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace edgeguard::detect {

// Signals, in the order statistics and thresholds are laid out everywhere.
enum Signal : int {
  kInvalid = 0,    // queries outside the declared input domain in the window
  kNovelty = 1,    // CUSUM of clipped per-query novelty above the benign slack
  kChain = 2,      // queries in the window that are small perturbations of a recent query
  kLowMargin = 3,  // low-margin answers in the window
  kCoverage = 4,   // distinct sketch cells the client has visited
  kVolume = 5,     // queries the client has sent
  kCombined = 6,   // sum of the novelty, chain and low-margin ratios
  kSignalCount = 7,
};

// The names of the signals, in enum order; exported as edgeguard._core.SIGNALS so Python cannot drift.
constexpr std::array<const char*, kSignalCount> kSignalNames = {
    "invalid", "novelty", "chain", "low_margin", "coverage", "volume", "combined",
};

constexpr uint32_t kCoverageBits = 12;  // sign bits of the first sketch coordinates -> 4096 cells
constexpr uint32_t kCoverageWords = (1u << kCoverageBits) / 64;
constexpr uint32_t kMaxWindow = 1024;
constexpr uint32_t kMaxReservoir = 4096;
constexpr uint32_t kMaxSketchDim = 256;

struct Model {
  uint32_t dim = 0;         // features per query (flattened)
  uint32_t sketch_dim = 0;  // rows of components; >= kCoverageBits
  uint32_t classes = 0;     // output width used for the margin signal; 0 = no output signal
  std::vector<float> mean;          // dim
  std::vector<float> components;    // sketch_dim x dim, orthonormal rows
  std::vector<float> sketch_center; // sketch_dim: median of calibration sketches
  std::vector<float> sketch_scale;  // sketch_dim: robust scale (1.4826 MAD), > 0
  std::vector<float> lo, hi;        // dim: accepted value range per feature
  float mahal_ref = 1;      // median calibration Mahalanobis distance in the sketch, > 0
  float resid_ref = 1;      // median calibration residual norm, > 0
  float novelty_slack = 1;  // CUSUM drift: per-query novelty a benign client rarely exceeds
  float novelty_cap = 4;    // per-query novelty is clipped here so one outlier cannot alert alone
  float near_dist = 0;      // sketch distance at or below which a query extends a chain
  float low_margin = 0;     // top-1 minus top-2 output below which an answer is low-margin
  std::array<float, kSignalCount> thresholds{};  // > 0; +inf disables a signal
};

struct Limits {
  uint32_t window = 32;       // recent queries the windowed counts look at
  uint32_t reservoir = 96;    // recent distinct queries kept (as sketches) for chain detection
  uint32_t max_clients = 1024;  // clients tracked; the least recently seen is evicted beyond this
};

// Why a Model or Limits was refused; empty when valid.
std::string validate(const Model& m, const Limits& l);

struct Result {
  std::array<float, kSignalCount> stats{};
  float risk = 0;        // max over signals of stat / threshold
  float peak_risk = 0;   // highest risk this client has reached
  uint64_t queries = 0;  // queries seen from this client, this one included
  bool first_alert = false;  // risk reached 1 for the first time on this query
};

// One client's evidence. Its size is fixed by Limits and the sketch dimension.
class ClientState {
 public:
  ClientState(const Model& m, const Limits& l);
  size_t bytes() const;

 private:
  friend class Detector;
  uint64_t queries_ = 0;
  uint64_t first_alert_query_ = 0;  // 0 = never alerted
  float peak_risk_ = 0;
  uint32_t head_ = 0;    // next window slot
  uint32_t filled_ = 0;  // reservoir entries in use
  uint32_t next_ = 0;    // next reservoir slot (ring: recent history)
  uint32_t coverage_ = 0;
  float cusum_ = 0;                // novelty evidence accumulated over the client's recent queries
  std::vector<uint8_t> flags_;     // window: bit 0 invalid, 1 chain, 2 low margin
  std::vector<float> sketches_;    // reservoir x sketch_dim: the client's most recent distinct queries
  std::array<uint64_t, kCoverageWords> cells_{};
};

class Detector {
 public:
  Detector(Model model, Limits limits);  // throws std::invalid_argument if validate() fails

  // Scores one query. x has model.dim floats, y has model.classes floats or is null.
  Result observe(const std::string& client, const float* x, const float* y);
  // Records a query that could not be scored at all (wrong shape or dtype): it counts as invalid.
  Result observe_malformed(const std::string& client);

  bool known(const std::string& client) const;
  void forget(const std::string& client);
  size_t clients() const;
  uint64_t evictions() const;
  size_t state_bytes_per_client() const;
  const Model& model() const { return model_; }
  const Limits& limits() const { return limits_; }

  // Canonical little-endian snapshot of every client, least recently used first.
  std::string save() const;
  // Replaces all clients with a snapshot from save() made under the same sizes. Returns an error
  // message, or empty on success; on error the current clients are kept.
  std::string restore(const std::string& blob);

 private:
  struct Entry {
    std::string id;
    ClientState state;
  };
  ClientState& touch(const std::string& client);
  Result finish(ClientState& s, uint8_t flags);

  Model model_;
  Limits limits_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used at the front
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  uint64_t evictions_ = 0;
};

}  // namespace edgeguard::detect
