// Extraction-query detector: the per-query hot path, with no Python in it.
//
// A Model holds what the profile says about benign traffic (an optional average-pooling of the
// input, a linear sketch fitted on calibration data, robust statistics of it, the declared input
// domain, the near-duplicate radii and calibrated thresholds). A Detector keeps one fixed-size
// ClientState per client id in a bounded LRU, plus one fleet state that sees every client's
// queries, updates them for each query and returns the signal statistics and the risks (the
// largest statistic/threshold ratio).
//
// Every signal accumulates evidence (CUSUM: max(0, s + event - slack)) rather than counting in a
// window, so benign queries mixed into an attack slow it down but cannot reset it. Near-duplicates
// are found in a NearMemory: a hash-selected sample of the session's distinct queries (int8 sketch
// codes). Which queries are kept depends only on a salted hash of each query, never on when it was
// sent, so how an attacker orders or spaces a perturbation chain does not matter; the memory keeps
// every query until it fills, then halves its sampling rate (and weights the evidence of a hit by
// the inverse rate, up to a cap). Two samples of the same level merge exactly (their union), which
// is how the fleet views of several devices combine.
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
  kInvalid = 0,    // CUSUM of queries outside the declared input domain
  kNovelty = 1,    // CUSUM of clipped per-query novelty above the benign slack
  kChain = 2,      // CUSUM of near-duplicate (perturbation-step) queries against the session memory
  kLowMargin = 3,  // CUSUM of low-margin answers
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
constexpr uint32_t kMaxSketchDim = 256;
constexpr uint32_t kMaxPooledDim = 1u << 16;
constexpr uint32_t kMaxMemory = 1u << 16;     // near-duplicate memory entries
constexpr uint32_t kMaxBloomBits = 1u << 24;  // seen-before filter bits
constexpr float kCodeRange = 8.0f;            // int8 codes span +-8 robust deviations per coordinate

// How a query related to what the memory holds.
enum Event : int { kNew = 0, kStep = 1, kRepeat = 2 };

struct Model {
  uint32_t dim = 0;         // features per query (flattened)
  std::vector<uint32_t> input_shape;  // product = dim
  std::vector<uint32_t> pool;         // average-pooling factor per axis (1 = none); partial blocks allowed
  uint32_t sketch_dim = 0;  // rows of components; >= kCoverageBits
  uint32_t classes = 0;     // output width used for the margin signal; 0 = no output signal
  uint32_t output_kind = 0; // what class scores must look like: 0 anything, 1 probabilities, 2 logits
  std::vector<float> mean;          // pooled_dim
  std::vector<float> components;    // sketch_dim x pooled_dim, orthonormal rows
  std::vector<float> sketch_center; // sketch_dim: median of calibration sketches
  std::vector<float> sketch_scale;  // sketch_dim: robust scale (1.4826 MAD), > 0
  float lo = 0, hi = 0;     // accepted value range of every feature
  float mahal_ref = 1;      // median calibration Mahalanobis distance in the sketch, > 0
  float resid_ref = 1;      // median calibration residual norm, > 0
  float novelty_slack = 1;  // CUSUM drift: per-query novelty a benign client rarely exceeds
  float novelty_cap = 4;    // per-query novelty is clipped here so one outlier cannot alert alone
  float repeat_dist = 0;    // sketch distance at or below which a query re-captures a remembered one
  float near_dist = 0;      // sketch distance at or below which (above repeat_dist) it is a perturbation step
  float chain_slack = 0.05f;  // CUSUM drift of the chain signal per new query
  float chain_weight_cap = 1; // a step found in a memory sampled at rate 2^-L counts min(2^L, cap)
  float low_margin = 0;     // top-1 minus top-2 output below which an answer is low-margin
  float margin_slack = 0.2f;  // CUSUM drift of the low-margin signal
  float invalid_decay = 1.0f / 32;  // how much one in-domain query takes off the invalid CUSUM
  uint64_t salt = 0;        // keys the memory's sampling hash
  std::array<float, kSignalCount> thresholds{};        // per client; > 0; +inf disables a signal
  std::array<float, kSignalCount> fleet_thresholds{};  // for the fleet state
};

struct Limits {
  uint32_t memory = 320;        // near-duplicate memory entries per client
  uint32_t bloom_bits = 8192;   // seen-before filter per client (exact re-sends are neutral)
  uint32_t fleet_memory = 2048; // entries of the fleet's memory (0 = no fleet state)
  uint32_t fleet_bloom_bits = 1u << 16;
  uint32_t max_clients = 1024;  // clients tracked; the least recently seen is evicted beyond this
};

// Why a Model or Limits was refused; empty when valid.
std::string validate(const Model& m, const Limits& l);

// Why rows of class scores are not of the model's output_kind (probabilities: every row in [0, 1]
// summing to 1 within 0.01; logits: not every row a distribution); empty when they are.
std::string check_scores(const Model& m, const float* y, size_t rows);

struct Result {
  std::array<float, kSignalCount> stats{};
  float risk = 0;        // max over signals of stat / threshold
  float peak_risk = 0;   // highest risk this client has reached
  uint64_t queries = 0;  // queries seen from this client, this one included
  bool first_alert = false;  // risk reached 1 for the first time on this query
  int event = kNew;      // how the query related to the client's memory
  std::array<float, kSignalCount> fleet_stats{};
  float fleet_risk = 0;
  bool fleet_first_alert = false;
};

// A sample of distinct queries, chosen by a salted hash of each query's code (see the file comment).
class NearMemory {
 public:
  NearMemory(uint32_t capacity, uint32_t sketch_dim, uint32_t bloom_bits);
  size_t bytes() const;

 // Fields are public to the detector's own code (detector.cpp); nothing else includes this header.
  uint32_t level_ = 0;  // entries have hash level >= level_ (sampling rate 2^-level_)
  uint32_t used_ = 0;
  std::vector<int8_t> codes_;    // capacity x sketch_dim
  std::vector<uint8_t> levels_;  // capacity
  std::vector<uint64_t> bloom_;  // bloom_bits / 64: queries seen before (two probes)
  std::vector<int8_t> lead_;     // capacity: each entry's first code, contiguous for a fast first pass
};

// One client's (or the fleet's) evidence. Its size is fixed by Limits and the sketch dimension.
class ClientState {
 public:
  ClientState(uint32_t sketch_dim, uint32_t memory, uint32_t bloom_bits);
  size_t bytes() const;

  uint64_t queries_ = 0;
  uint64_t first_alert_query_ = 0;  // 0 = never alerted
  float peak_risk_ = 0;
  uint32_t coverage_ = 0;
  std::array<float, 4> cusum_{};  // invalid, novelty, chain, low margin
  std::array<uint64_t, kCoverageWords> cells_{};
  NearMemory mem_;
};

// What observe() derives from a query before touching any state (also fed directly by calibration).
struct Features {
  bool valid = false;
  bool scored = false;      // an answer was given (the margin signal sees it)
  bool low_margin = false;
  float novelty = 0;
  const float* sketch = nullptr;  // sketch_dim floats when valid
};

class Detector {
 public:
  Detector(Model model, Limits limits);  // throws std::invalid_argument if validate() fails

  // Scores one query. x has model.dim floats, y has model.classes floats or is null.
  Result observe(const std::string& client, const float* x, const float* y);
  // Records a query that could not be scored at all (wrong shape): it counts as invalid.
  Result observe_malformed(const std::string& client);
  // Scores a query already reduced to its features (calibration replays).
  Result observe_features(const std::string& client, const Features& f);

  bool known(const std::string& client) const;
  void forget(const std::string& client);
  size_t clients() const;
  uint64_t evictions() const;
  size_t state_bytes_per_client() const;
  size_t fleet_state_bytes() const;
  bool has_fleet() const { return limits_.fleet_memory > 0; }
  const Model& model() const { return model_; }
  const Limits& limits() const { return limits_; }
  uint32_t pooled_dim() const { return pooled_dim_; }

  // Canonical little-endian snapshot of the fleet state and every client, least recently used first.
  std::string save() const;
  // Replaces all state with a snapshot from save() made under the same sizes. Returns an error
  // message, or empty on success; on error the current state is kept.
  std::string restore(const std::string& blob);
  // The fleet state alone, and merging another device's fleet state into this one: memories are
  // united (exactly: same-level hash samples), seen-before filters and coverage ORed, query counts
  // added, evidence (CUSUMs) and peak risk take the larger value. Empty on success.
  std::string save_fleet() const;
  std::string merge_fleet(const std::string& blob);

 private:
  struct Entry {
    std::string id;
    ClientState state;
  };
  ClientState& touch(const std::string& client);
  ClientState fresh_client() const;
  ClientState fresh_fleet() const;
  int update(ClientState& s, const Features& f, const int8_t* code, uint64_t hash) const;
  Result finish(ClientState& s, const std::array<float, kSignalCount>& t, bool* first,
                std::array<float, kSignalCount>* stats, float* risk) const;
  Result run(const std::string& client, const Features& f);
  void sketch_of(const float* x, float* sketch, float* novelty) const;
  void code_of(const float* sketch, int8_t* code, uint64_t* hash) const;

  Model model_;
  Limits limits_;
  uint32_t pooled_dim_ = 0;
  std::vector<uint32_t> pool_index_;  // dim -> pooled feature (empty: no pooling)
  std::vector<float> pool_weight_;    // pooled_dim: 1 / members
  std::vector<float> code_step_;      // sketch_dim: value of one code unit
  std::vector<float> code_weight_;    // sketch_dim: code_step^2
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used at the front
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  ClientState fleet_;
  uint64_t evictions_ = 0;
};

}  // namespace edgeguard::detect
