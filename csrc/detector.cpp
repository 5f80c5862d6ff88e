#include "detector.h"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace edgeguard::detect {
namespace {

constexpr char kStateMagic[4] = {'E', 'G', 'D', 'S'};
constexpr char kFleetMagic[4] = {'E', 'G', 'D', 'F'};
// 1: window flags and a ring of recent sketches. 2: CUSUM evidence and the hash-sampled memory.
constexpr uint32_t kStateVersion = 2;
constexpr uint32_t kMaxClientIdLen = 1024;
constexpr uint32_t kMaxLevel = 64;

bool positive_finite(float v) { return std::isfinite(v) && v > 0; }

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint32_t leading_zeros(uint64_t h) {
  uint32_t n = 0;
  for (uint64_t bit = uint64_t{1} << 63; bit != 0 && !(h & bit); bit >>= 1) ++n;
  return n;
}

// Fixed little-endian encoding, whatever the host, so snapshots move between devices.
class Writer {
 public:
  void u8(uint8_t v) { out.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) { for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void u64(uint64_t v) { for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); }
  void f32(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    u32(b);
  }
  std::string out;
};

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  bool u8(uint8_t* v) {
    if (pos_ >= s_.size()) return false;
    *v = static_cast<uint8_t>(s_[pos_++]);
    return true;
  }
  bool u32(uint32_t* v) { return uint_n(v, 4); }
  bool u64(uint64_t* v) { return uint_n(v, 8); }
  bool f32(float* v) {
    uint32_t b;
    if (!u32(&b)) return false;
    std::memcpy(v, &b, 4);
    return true;
  }
  bool bytes(std::string* out, size_t n) {
    if (s_.size() - pos_ < n) return false;
    out->assign(s_, pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == s_.size(); }

 private:
  template <typename T>
  bool uint_n(T* v, int n) {
    if (s_.size() - pos_ < static_cast<size_t>(n)) return false;
    *v = 0;
    for (int i = 0; i < n; ++i) *v |= static_cast<T>(static_cast<uint8_t>(s_[pos_++])) << (8 * i);
    return true;
  }
  const std::string& s_;
  size_t pos_ = 0;
};

bool bloom_test(const std::vector<uint64_t>& b, uint64_t h) {
  const uint64_t bits = b.size() * 64, p1 = h % bits, p2 = mix64(h) % bits;
  return ((b[p1 / 64] >> (p1 % 64)) & 1u) && ((b[p2 / 64] >> (p2 % 64)) & 1u);
}

void bloom_add(std::vector<uint64_t>& b, uint64_t h) {
  const uint64_t bits = b.size() * 64, p1 = h % bits, p2 = mix64(h) % bits;
  b[p1 / 64] |= uint64_t{1} << (p1 % 64);
  b[p2 / 64] |= uint64_t{1} << (p2 % 64);
}

// Drops entries below the memory's level, keeping the others in order.
void compact(NearMemory& mem, uint32_t k) {
  uint32_t out = 0;
  for (uint32_t e = 0; e < mem.used_; ++e) {
    if (mem.levels_[e] < mem.level_) continue;
    if (out != e) {
      std::memcpy(&mem.codes_[size_t{out} * k], &mem.codes_[size_t{e} * k], k);
      mem.levels_[out] = mem.levels_[e];
      mem.lead_[out] = mem.lead_[e];
    }
    ++out;
  }
  mem.used_ = out;
}

// Adds an entry of the given hash level, halving the sampling rate while the memory is full.
void insert(NearMemory& mem, const int8_t* code, uint32_t level, uint32_t k) {
  const uint32_t cap = static_cast<uint32_t>(mem.levels_.size());
  std::memcpy(&mem.codes_[size_t{mem.used_} * k], code, k);
  mem.levels_[mem.used_] = static_cast<uint8_t>(level);
  mem.lead_[mem.used_] = code[0];
  ++mem.used_;
  while (mem.used_ == cap && mem.level_ < kMaxLevel) {
    ++mem.level_;
    compact(mem, k);
  }
  if (mem.used_ == cap) --mem.used_;  // every entry at the top level: drop the newest
}

void write_state(Writer& w, const ClientState& s, uint32_t k);

}  // namespace

std::string validate(const Model& m, const Limits& l) {
  if (m.dim == 0) return "dim must be positive";
  if (m.input_shape.empty() || m.pool.size() != m.input_shape.size()) return "pool needs one factor per input axis";
  uint64_t prod = 1, pooled = 1;
  for (size_t a = 0; a < m.input_shape.size(); ++a) {
    if (m.input_shape[a] == 0 || m.pool[a] == 0 || m.pool[a] > m.input_shape[a])
      return "input_shape entries must be positive and pool factors in 1..axis length";
    prod *= m.input_shape[a];
    pooled *= (m.input_shape[a] + m.pool[a] - 1) / m.pool[a];
    if (prod > (uint64_t{1} << 40)) return "input_shape is too large";
  }
  if (prod != m.dim) return "input_shape does not match dim";
  if (pooled > kMaxPooledDim) return "pooled input has too many features (at most 65536)";
  const size_t d = pooled, k = m.sketch_dim;
  if (m.sketch_dim < kCoverageBits || m.sketch_dim > kMaxSketchDim || m.sketch_dim > d)
    return "sketch_dim must be between 12 and min(256, pooled features)";
  if (m.classes == 1) return "classes must be 0 (no output signal) or at least 2";
  if (m.output_kind > 2 || (m.output_kind != 0 && m.classes == 0)) return "output_kind must be 0, 1 or 2 (with classes)";
  if (m.mean.size() != d) return "mean must have one entry per pooled feature";
  if (m.components.size() != k * d) return "components must be sketch_dim x pooled features";
  if (m.sketch_center.size() != k || m.sketch_scale.size() != k) return "sketch statistics must have sketch_dim entries";
  for (float v : m.mean)
    if (!std::isfinite(v)) return "mean must be finite";
  if (std::isnan(m.lo) || std::isnan(m.hi) || !(m.lo <= m.hi)) return "lo <= hi required";
  for (float v : m.components)
    if (!std::isfinite(v)) return "components must be finite";
  for (size_t j = 0; j < k; ++j)
    if (!std::isfinite(m.sketch_center[j]) || !positive_finite(m.sketch_scale[j]))
      return "sketch centre must be finite and scale positive";
  if (!positive_finite(m.mahal_ref) || !positive_finite(m.resid_ref) || !positive_finite(m.novelty_cap) ||
      !positive_finite(m.novelty_slack))
    return "novelty references, slack and cap must be positive";
  if (!std::isfinite(m.near_dist) || m.near_dist < 0 || !std::isfinite(m.repeat_dist) || m.repeat_dist < 0 ||
      !std::isfinite(m.low_margin) || m.low_margin < 0)
    return "near_dist, repeat_dist and low_margin must be finite and non-negative";
  if (!positive_finite(m.chain_slack) || !(m.chain_weight_cap >= 1) || !std::isfinite(m.chain_weight_cap) ||
      !positive_finite(m.margin_slack) || !positive_finite(m.invalid_decay))
    return "chain_slack, margin_slack and invalid_decay must be positive and chain_weight_cap >= 1";
  for (float t : m.thresholds)
    if (std::isnan(t) || !(t > 0)) return "thresholds must be positive (+inf disables a signal)";
  for (float t : m.fleet_thresholds)
    if (std::isnan(t) || !(t > 0)) return "fleet thresholds must be positive (+inf disables a signal)";
  if (l.memory < 2 || l.memory > kMaxMemory) return "memory must be in 2..65536";
  if (l.fleet_memory == 1 || l.fleet_memory > kMaxMemory) return "fleet_memory must be 0 or in 2..65536";
  for (uint32_t bits : {l.bloom_bits, l.fleet_bloom_bits})
    if (bits < 64 || bits > kMaxBloomBits || bits % 64) return "bloom bits must be a multiple of 64 in 64..2^24";
  if (l.max_clients == 0) return "max_clients must be positive";
  return {};
}

std::string check_scores(const Model& m, const float* y, size_t rows) {
  if (m.output_kind == 0 || y == nullptr) return {};
  bool all_distributions = true;
  for (size_t r = 0; r < rows && all_distributions; ++r) {
    double sum = 0;
    for (uint32_t c = 0; c < m.classes; ++c) {
      const float v = y[r * m.classes + c];
      if (!(v >= -1e-4f && v <= 1.0f + 1e-4f)) all_distributions = false;
      sum += v;
    }
    all_distributions = all_distributions && std::fabs(sum - 1.0) <= 1e-2;
  }
  if (m.output_kind == 1 && !all_distributions)
    return "outputs are not probabilities (rows in [0, 1] summing to 1), but the profile was calibrated on "
           "probabilities: pass the model's softmax output";
  if (m.output_kind == 2 && all_distributions && rows * m.classes > 2)
    return "outputs look like probabilities, but the profile was calibrated on logits: pass the raw scores";
  return {};
}

NearMemory::NearMemory(uint32_t capacity, uint32_t sketch_dim, uint32_t bloom_bits)
    : codes_(size_t{capacity} * sketch_dim, 0), levels_(capacity, 0), bloom_(bloom_bits / 64, 0), lead_(capacity, 0) {}

size_t NearMemory::bytes() const {
  return codes_.size() + levels_.size() + lead_.size() + bloom_.size() * sizeof(uint64_t);
}

ClientState::ClientState(uint32_t sketch_dim, uint32_t memory, uint32_t bloom_bits)
    : mem_(memory, sketch_dim, bloom_bits) {}

size_t ClientState::bytes() const { return sizeof(ClientState) + mem_.bytes(); }

Detector::Detector(Model model, Limits limits)
    : model_(std::move(model)), limits_(limits), fleet_(0, 0, 64) {
  std::string err = validate(model_, limits_);
  if (!err.empty()) throw std::invalid_argument(err);
  const size_t axes = model_.input_shape.size();
  std::vector<uint32_t> pooled_shape(axes);
  bool pooling = false;
  pooled_dim_ = 1;
  for (size_t a = 0; a < axes; ++a) {
    pooled_shape[a] = (model_.input_shape[a] + model_.pool[a] - 1) / model_.pool[a];
    pooled_dim_ *= pooled_shape[a];
    pooling |= model_.pool[a] > 1;
  }
  if (pooling) {
    pool_index_.resize(model_.dim);
    std::vector<float> members(pooled_dim_, 0.0f);
    for (uint32_t i = 0; i < model_.dim; ++i) {
      uint32_t rest = i, p = 0, stride = 1;
      for (size_t a = axes; a-- > 0;) {
        const uint32_t coord = rest % model_.input_shape[a];
        rest /= model_.input_shape[a];
        p += (coord / model_.pool[a]) * stride;
        stride *= pooled_shape[a];
      }
      pool_index_[i] = p;
      members[p] += 1.0f;
    }
    pool_weight_.resize(pooled_dim_);
    for (uint32_t p = 0; p < pooled_dim_; ++p) pool_weight_[p] = 1.0f / members[p];
  }
  const uint32_t k = model_.sketch_dim;
  code_step_.resize(k);
  code_weight_.resize(k);
  for (uint32_t j = 0; j < k; ++j) {
    code_step_[j] = kCodeRange * model_.sketch_scale[j] / 127.0f;
    code_weight_[j] = code_step_[j] * code_step_[j];
  }
  fleet_ = fresh_fleet();
}

ClientState Detector::fresh_client() const {
  return ClientState(model_.sketch_dim, limits_.memory, limits_.bloom_bits);
}

ClientState Detector::fresh_fleet() const {
  if (limits_.fleet_memory == 0) return ClientState(0, 0, 64);
  return ClientState(model_.sketch_dim, limits_.fleet_memory, limits_.fleet_bloom_bits);
}

ClientState& Detector::touch(const std::string& client) {
  auto it = index_.find(client);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->state;
  }
  if (index_.size() >= limits_.max_clients) {
    index_.erase(lru_.back().id);
    lru_.pop_back();
    ++evictions_;
  }
  lru_.push_front(Entry{client, fresh_client()});
  index_[client] = lru_.begin();
  return lru_.front().state;
}

void Detector::sketch_of(const float* x, float* sketch, float* novelty) const {
  const Model& m = model_;
  const uint32_t d = pooled_dim_, k = m.sketch_dim;
  thread_local std::vector<float> buf;
  buf.assign(d, 0.0f);
  if (pool_index_.empty()) {
    for (uint32_t i = 0; i < d; ++i) buf[i] = x[i] - m.mean[i];
  } else {
    for (uint32_t i = 0; i < m.dim; ++i) buf[pool_index_[i]] += x[i];
    for (uint32_t p = 0; p < d; ++p) buf[p] = buf[p] * pool_weight_[p] - m.mean[p];
  }
  double total = 0, in_sketch = 0, mahal = 0;
  for (uint32_t i = 0; i < d; ++i) total += double(buf[i]) * buf[i];
  for (uint32_t j = 0; j < k; ++j) {
    const float* row = &m.components[size_t{j} * d];
    float z = 0;
    for (uint32_t i = 0; i < d; ++i) z += row[i] * buf[i];
    sketch[j] = z;
    in_sketch += double(z) * z;
    const double u = (z - m.sketch_center[j]) / m.sketch_scale[j];
    mahal += u * u;
  }
  const double resid = std::sqrt(std::max(0.0, total - in_sketch));
  const double score = 0.5 * std::sqrt(mahal / k) / m.mahal_ref + 0.5 * resid / m.resid_ref;
  *novelty = static_cast<float>(std::min<double>(score, m.novelty_cap));
}

void Detector::code_of(const float* sketch, int8_t* code, uint64_t* hash) const {
  const uint32_t k = model_.sketch_dim;
  uint64_t h = mix64(model_.salt ^ 0x9e3779b97f4a7c15ULL), word = 0;
  for (uint32_t j = 0; j < k; ++j) {
    const float q = std::round((sketch[j] - model_.sketch_center[j]) / code_step_[j]);
    code[j] = static_cast<int8_t>(std::max(-127.0f, std::min(127.0f, q)));  // NaN-free: sketch is finite
    word = (word << 8) | static_cast<uint8_t>(code[j]);
    if (j % 8 == 7 || j + 1 == k) {
      h = mix64(h ^ word);
      word = 0;
    }
  }
  *hash = h;
}

Result Detector::observe(const std::string& client, const float* x, const float* y) {
  const Model& m = model_;
  Features f;
  f.valid = true;
  for (uint32_t i = 0; i < m.dim; ++i)
    if (!(x[i] >= m.lo && x[i] <= m.hi)) f.valid = false;  // NaN fails too
  float sketch[kMaxSketchDim];
  if (f.valid) {
    sketch_of(x, sketch, &f.novelty);
    f.sketch = sketch;
  }
  if (y != nullptr && m.classes >= 2) {
    float top1 = -std::numeric_limits<float>::infinity(), top2 = top1;
    for (uint32_t c = 0; c < m.classes; ++c) {
      if (y[c] > top1) {
        top2 = top1;
        top1 = y[c];
      } else if (y[c] > top2) {
        top2 = y[c];
      }
    }
    f.low_margin = top1 - top2 < m.low_margin;
    f.scored = true;
  }
  return run(client, f);
}

Result Detector::observe_features(const std::string& client, const Features& f) { return run(client, f); }

Result Detector::observe_malformed(const std::string& client) {
  Features f;  // invalid, no answer
  return run(client, f);
}

int Detector::update(ClientState& s, const Features& f, const int8_t* code, uint64_t hash) const {
  const Model& m = model_;
  ++s.queries_;
  auto margin = [&] {
    if (f.scored) s.cusum_[3] = std::max(0.0f, s.cusum_[3] + (f.low_margin ? 1.0f : 0.0f) - m.margin_slack);
  };
  if (!f.valid) {
    s.cusum_[0] += 1.0f;
    margin();
    return kNew;
  }

  NearMemory& mem = s.mem_;
  const uint32_t k = m.sketch_dim;
  // The first coordinate alone bounds the distance from below: one byte (contiguous) rules most
  // entries out. Sketch coordinates come largest-variance first, so a partial sum over a few more
  // rules out almost all the rest. Only entries within the chain radius matter, and the scan stops
  // at the first re-capture.
  const float cutoff = m.near_dist * m.near_dist, repeat = m.repeat_dist * m.repeat_dist;
  const int lead_radius = static_cast<int>(std::ceil(m.near_dist / code_step_[0]));
  const int lead = code[0];
  float best = std::numeric_limits<float>::infinity();
  for (uint32_t e = 0; e < mem.used_; ++e) {
    if (std::abs(int(mem.lead_[e]) - lead) > lead_radius) continue;
    const int8_t* c = &mem.codes_[size_t{e} * k];
    float d2 = 0;
    for (uint32_t j0 = 0; j0 < k && d2 <= cutoff; j0 += 8) {
      const uint32_t j1 = std::min(k, j0 + 8);
      for (uint32_t j = j0; j < j1; ++j) {
        const float diff = float(int(code[j]) - int(c[j]));
        d2 += code_weight_[j] * diff * diff;
      }
    }
    if (d2 <= cutoff) best = std::min(best, d2);
    if (best <= repeat) break;
  }
  int event = kNew;
  // Re-sends come first: a query sent before but no longer in the sample would otherwise count as
  // a step again each time it came back next to a remembered near-twin. (A thief that fills the
  // filter to hide steps must send thousands of distinct queries, which thins the sample anyway.)
  if (best <= repeat) {
    event = kRepeat;  // a re-capture (or exact re-send) of a remembered query tells a thief nothing new
  } else if (bloom_test(mem.bloom_, hash)) {
    event = kRepeat;  // sent before, though perhaps no longer in the sample
  } else if (best <= cutoff) {
    event = kStep;
  }
  // A repeat (re-capture or re-send) tells a thief nothing new: it moves no evidence at all.
  if (event != kRepeat) {
    s.cusum_[0] = std::max(0.0f, s.cusum_[0] - m.invalid_decay);
    s.cusum_[1] = std::max(0.0f, s.cusum_[1] + f.novelty - m.novelty_slack);
    margin();
  }
  if (event == kStep) {
    const float weight = std::min(m.chain_weight_cap, std::ldexp(1.0f, static_cast<int>(std::min(mem.level_, 30u))));
    s.cusum_[2] = std::max(0.0f, s.cusum_[2] + weight - m.chain_slack);
  } else if (event == kNew) {
    s.cusum_[2] = std::max(0.0f, s.cusum_[2] - m.chain_slack);
  }
  bloom_add(mem.bloom_, hash);
  // A re-capture of a remembered query adds nothing the memory does not hold already.
  const uint32_t level = std::min(leading_zeros(hash), kMaxLevel);
  if (best > repeat && level >= mem.level_) insert(mem, code, level, k);
  uint32_t cell = 0;
  for (uint32_t j = 0; j < kCoverageBits; ++j) cell |= uint32_t{f.sketch[j] > m.sketch_center[j]} << j;
  const uint64_t bit = uint64_t{1} << (cell % 64);
  if (!(s.cells_[cell / 64] & bit)) {
    s.cells_[cell / 64] |= bit;
    ++s.coverage_;
  }
  return event;
}

Result Detector::finish(ClientState& s, const std::array<float, kSignalCount>& t, bool* first,
                        std::array<float, kSignalCount>* stats, float* risk) const {
  Result r;
  auto& st = *stats;
  st[kInvalid] = s.cusum_[0];
  st[kNovelty] = s.cusum_[1];
  st[kChain] = s.cusum_[2];
  st[kLowMargin] = s.cusum_[3];
  st[kCoverage] = static_cast<float>(s.coverage_);
  st[kVolume] = static_cast<float>(s.queries_);
  st[kCombined] = st[kNovelty] / t[kNovelty] + st[kChain] / t[kChain] + st[kLowMargin] / t[kLowMargin];
  *risk = 0;
  for (int j = 0; j < kSignalCount; ++j) *risk = std::max(*risk, st[j] / t[j]);
  *first = false;
  if (*risk >= 1.0f && s.first_alert_query_ == 0) {
    s.first_alert_query_ = s.queries_;
    *first = true;
  }
  s.peak_risk_ = std::max(s.peak_risk_, *risk);
  r.peak_risk = s.peak_risk_;
  r.queries = s.queries_;
  return r;
}

Result Detector::run(const std::string& client, const Features& f) {
  int8_t code[kMaxSketchDim];
  uint64_t hash = 0;
  if (f.valid) code_of(f.sketch, code, &hash);
  std::lock_guard<std::mutex> lock(mu_);
  ClientState& s = touch(client);
  const int event = update(s, f, code, hash);
  Result r;
  {
    bool first;
    std::array<float, kSignalCount> stats;
    float risk;
    r = finish(s, model_.thresholds, &first, &stats, &risk);
    r.stats = stats;
    r.risk = risk;
    r.first_alert = first;
  }
  r.event = event;
  if (has_fleet()) {
    update(fleet_, f, code, hash);
    bool first;
    float risk;
    finish(fleet_, model_.fleet_thresholds, &first, &r.fleet_stats, &risk);
    r.fleet_risk = risk;
    r.fleet_first_alert = first;
  }
  return r;
}

bool Detector::known(const std::string& client) const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.count(client) != 0;
}

void Detector::forget(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(client);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

size_t Detector::clients() const {
  std::lock_guard<std::mutex> lock(mu_);
  return index_.size();
}

uint64_t Detector::evictions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evictions_;
}

size_t Detector::state_bytes_per_client() const { return fresh_client().bytes(); }

size_t Detector::fleet_state_bytes() const { return has_fleet() ? fresh_fleet().bytes() : 0; }

namespace {

void write_state(Writer& w, const ClientState& s, uint32_t k) {
  w.u64(s.queries_);
  w.u64(s.first_alert_query_);
  w.f32(s.peak_risk_);
  for (float c : s.cusum_) w.f32(c);
  w.u32(s.mem_.level_);
  w.u32(s.mem_.used_);
  for (size_t i = 0; i < size_t{s.mem_.used_} * k; ++i) w.u8(static_cast<uint8_t>(s.mem_.codes_[i]));
  for (uint32_t e = 0; e < s.mem_.used_; ++e) w.u8(s.mem_.levels_[e]);
  for (uint64_t b : s.mem_.bloom_) w.u64(b);
  for (uint64_t c : s.cells_) w.u64(c);
}

// Reads into a fresh state of the right sizes; false if truncated or insane.
bool read_state(Reader& r, ClientState& s, uint32_t k, const char** why) {
  *why = "truncated detector state";
  NearMemory& mem = s.mem_;
  bool ok = r.u64(&s.queries_) && r.u64(&s.first_alert_query_) && r.f32(&s.peak_risk_);
  for (float& c : s.cusum_) ok = ok && r.f32(&c);
  ok = ok && r.u32(&mem.level_) && r.u32(&mem.used_);
  if (!ok) return false;
  *why = "detector state holds out-of-range values";
  if (mem.used_ >= mem.levels_.size() || mem.level_ > kMaxLevel) return false;
  for (size_t i = 0; i < size_t{mem.used_} * k; ++i) {
    uint8_t b;
    if (!r.u8(&b)) return (*why = "truncated detector state"), false;
    mem.codes_[i] = static_cast<int8_t>(b);
  }
  for (uint32_t e = 0; e < mem.used_; ++e) {
    if (!r.u8(&mem.levels_[e])) return (*why = "truncated detector state"), false;
    mem.lead_[e] = mem.codes_[size_t{e} * k];
  }
  for (uint64_t& b : mem.bloom_) ok = ok && r.u64(&b);
  for (uint64_t& c : s.cells_) ok = ok && r.u64(&c);
  if (!ok) return (*why = "truncated detector state"), false;
  uint32_t coverage = 0;
  for (uint64_t c : s.cells_) coverage += static_cast<uint32_t>(std::bitset<64>(c).count());
  s.coverage_ = coverage;
  bool sane = s.first_alert_query_ <= s.queries_ && std::isfinite(s.peak_risk_) && s.peak_risk_ >= 0;
  for (float c : s.cusum_) sane = sane && std::isfinite(c) && c >= 0;
  for (uint32_t e = 0; e < mem.used_; ++e) sane = sane && mem.levels_[e] >= mem.level_ && mem.levels_[e] <= kMaxLevel;
  for (size_t i = 0; i < size_t{mem.used_} * k; ++i) sane = sane && mem.codes_[i] != -128;
  return sane;
}

}  // namespace

std::string Detector::save() const {
  std::lock_guard<std::mutex> lock(mu_);
  Writer w;
  for (char c : kStateMagic) w.u8(static_cast<uint8_t>(c));
  w.u32(kStateVersion);
  w.u32(model_.dim);
  w.u32(model_.sketch_dim);
  w.u32(limits_.memory);
  w.u32(limits_.bloom_bits);
  w.u32(limits_.fleet_memory);
  w.u32(limits_.fleet_bloom_bits);
  w.u64(evictions_);
  if (has_fleet()) write_state(w, fleet_, model_.sketch_dim);
  w.u64(lru_.size());
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    w.u32(static_cast<uint32_t>(it->id.size()));
    w.out += it->id;
    write_state(w, it->state, model_.sketch_dim);
  }
  return w.out;
}

std::string Detector::restore(const std::string& blob) {
  Reader r(blob);
  std::string magic;
  uint32_t version, dim, sketch_dim, memory, bloom, fleet_memory, fleet_bloom;
  uint64_t evictions, count;
  if (!r.bytes(&magic, 4) || magic != std::string(kStateMagic, 4)) return "not a detector state snapshot";
  if (!r.u32(&version)) return "truncated detector state";
  if (version != kStateVersion)
    return "detector state version " + std::to_string(version) + " is not supported (this build reads version " +
           std::to_string(kStateVersion) + "); start the clients afresh";
  if (!r.u32(&dim) || !r.u32(&sketch_dim) || !r.u32(&memory) || !r.u32(&bloom) || !r.u32(&fleet_memory) ||
      !r.u32(&fleet_bloom) || !r.u64(&evictions))
    return "truncated detector state";
  if (dim != model_.dim || sketch_dim != model_.sketch_dim || memory != limits_.memory ||
      bloom != limits_.bloom_bits || fleet_memory != limits_.fleet_memory || fleet_bloom != limits_.fleet_bloom_bits)
    return "detector state was saved under different sizes";
  const char* why = nullptr;
  ClientState fleet = fresh_fleet();
  if (has_fleet() && !read_state(r, fleet, sketch_dim, &why)) return why;
  if (!r.u64(&count)) return "truncated detector state";
  if (count > limits_.max_clients) return "detector state holds more clients than max_clients";

  std::list<Entry> lru;
  std::unordered_map<std::string, std::list<Entry>::iterator> index;
  for (uint64_t n = 0; n < count; ++n) {
    uint32_t id_len;
    std::string id;
    if (!r.u32(&id_len) || id_len > kMaxClientIdLen || !r.bytes(&id, id_len)) return "truncated detector state";
    if (index.count(id)) return "duplicate client id in detector state";
    ClientState s = fresh_client();
    if (!read_state(r, s, sketch_dim, &why)) return why;
    lru.push_front(Entry{std::move(id), std::move(s)});
    index[lru.front().id] = lru.begin();
  }
  if (!r.done()) return "trailing bytes after detector state";
  std::lock_guard<std::mutex> lock(mu_);
  lru_ = std::move(lru);
  index_ = std::move(index);
  fleet_ = std::move(fleet);
  evictions_ = evictions;
  return {};
}

std::string Detector::save_fleet() const {
  std::lock_guard<std::mutex> lock(mu_);
  Writer w;
  for (char c : kFleetMagic) w.u8(static_cast<uint8_t>(c));
  w.u32(kStateVersion);
  w.u32(model_.dim);
  w.u32(model_.sketch_dim);
  w.u32(limits_.fleet_memory);
  w.u32(limits_.fleet_bloom_bits);
  if (has_fleet()) write_state(w, fleet_, model_.sketch_dim);
  return w.out;
}

std::string Detector::merge_fleet(const std::string& blob) {
  if (!has_fleet()) return "this detector keeps no fleet state";
  Reader r(blob);
  std::string magic;
  uint32_t version, dim, sketch_dim, fleet_memory, fleet_bloom;
  if (!r.bytes(&magic, 4) || magic != std::string(kFleetMagic, 4)) return "not a fleet state snapshot";
  if (!r.u32(&version)) return "truncated fleet state";
  if (version != kStateVersion)
    return "fleet state version " + std::to_string(version) + " is not supported (this build reads version " +
           std::to_string(kStateVersion) + ")";
  if (!r.u32(&dim) || !r.u32(&sketch_dim) || !r.u32(&fleet_memory) || !r.u32(&fleet_bloom))
    return "truncated fleet state";
  if (dim != model_.dim || sketch_dim != model_.sketch_dim || fleet_memory != limits_.fleet_memory ||
      fleet_bloom != limits_.fleet_bloom_bits)
    return "fleet state was saved under different sizes";
  ClientState other = fresh_fleet();
  const char* why = nullptr;
  if (!read_state(r, other, sketch_dim, &why)) return why;
  if (!r.done()) return "trailing bytes after fleet state";

  std::lock_guard<std::mutex> lock(mu_);
  ClientState& s = fleet_;
  const uint32_t k = model_.sketch_dim;
  NearMemory& mem = s.mem_;
  const NearMemory& o = other.mem_;
  mem.level_ = std::max(mem.level_, o.level_);
  compact(mem, k);
  for (uint32_t e = 0; e < o.used_; ++e) {
    if (o.levels_[e] < mem.level_) continue;
    const int8_t* c = &o.codes_[size_t{e} * k];
    bool dup = false;
    for (uint32_t f = 0; f < mem.used_ && !dup; ++f) dup = std::memcmp(&mem.codes_[size_t{f} * k], c, k) == 0;
    if (!dup) insert(mem, c, o.levels_[e], k);
  }
  for (size_t i = 0; i < mem.bloom_.size(); ++i) mem.bloom_[i] |= o.bloom_[i];
  s.coverage_ = 0;
  for (size_t i = 0; i < s.cells_.size(); ++i) {
    s.cells_[i] |= other.cells_[i];
    s.coverage_ += static_cast<uint32_t>(std::bitset<64>(s.cells_[i]).count());
  }
  for (size_t i = 0; i < s.cusum_.size(); ++i) s.cusum_[i] = std::max(s.cusum_[i], other.cusum_[i]);
  s.peak_risk_ = std::max(s.peak_risk_, other.peak_risk_);
  const uint64_t before = s.queries_;
  s.queries_ += other.queries_;
  if (s.first_alert_query_ == 0 && other.first_alert_query_ != 0) s.first_alert_query_ = before + other.first_alert_query_;
  return {};
}

}  // namespace edgeguard::detect
