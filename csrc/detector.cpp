#include "detector.h"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace edgeguard::detect {
namespace {

constexpr uint8_t kFlagInvalid = 1, kFlagChain = 2, kFlagLowMargin = 4;
constexpr char kStateMagic[4] = {'E', 'G', 'D', 'S'};
constexpr uint32_t kStateVersion = 1;
constexpr uint32_t kMaxClientIdLen = 1024;

bool positive_finite(float v) { return std::isfinite(v) && v > 0; }

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

}  // namespace

std::string validate(const Model& m, const Limits& l) {
  if (m.dim == 0) return "dim must be positive";
  if (m.sketch_dim < kCoverageBits || m.sketch_dim > kMaxSketchDim || m.sketch_dim > m.dim)
    return "sketch_dim must be between 12 and min(256, dim)";
  if (m.classes == 1) return "classes must be 0 (no output signal) or at least 2";
  const size_t d = m.dim, k = m.sketch_dim;
  if (m.mean.size() != d || m.lo.size() != d || m.hi.size() != d) return "per-feature arrays must have dim entries";
  if (m.components.size() != k * d) return "components must be sketch_dim x dim";
  if (m.sketch_center.size() != k || m.sketch_scale.size() != k) return "sketch statistics must have sketch_dim entries";
  for (size_t i = 0; i < d; ++i)
    if (!std::isfinite(m.mean[i]) || std::isnan(m.lo[i]) || std::isnan(m.hi[i]) || !(m.lo[i] <= m.hi[i]))
      return "mean must be finite and lo <= hi";
  for (float v : m.components)
    if (!std::isfinite(v)) return "components must be finite";
  for (size_t j = 0; j < k; ++j)
    if (!std::isfinite(m.sketch_center[j]) || !positive_finite(m.sketch_scale[j]))
      return "sketch centre must be finite and scale positive";
  if (!positive_finite(m.mahal_ref) || !positive_finite(m.resid_ref) || !positive_finite(m.novelty_cap) ||
      !positive_finite(m.novelty_slack))
    return "novelty references, slack and cap must be positive";
  if (!std::isfinite(m.near_dist) || m.near_dist < 0 || !std::isfinite(m.low_margin) || m.low_margin < 0)
    return "near_dist and low_margin must be finite and non-negative";
  for (float t : m.thresholds)
    if (std::isnan(t) || !(t > 0)) return "thresholds must be positive (+inf disables a signal)";
  if (l.window == 0 || l.window > kMaxWindow) return "window must be in 1..1024";
  if (l.reservoir == 0 || l.reservoir > kMaxReservoir) return "reservoir must be in 1..4096";
  if (l.max_clients == 0) return "max_clients must be positive";
  return {};
}

ClientState::ClientState(const Model& m, const Limits& l)
    : flags_(l.window, 0), sketches_(size_t{l.reservoir} * m.sketch_dim, 0.0f) {}

size_t ClientState::bytes() const { return sizeof(ClientState) + flags_.size() + sketches_.size() * sizeof(float); }

Detector::Detector(Model model, Limits limits) : model_(std::move(model)), limits_(limits) {
  std::string err = validate(model_, limits_);
  if (!err.empty()) throw std::invalid_argument(err);
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
  lru_.push_front(Entry{client, ClientState(model_, limits_)});
  index_[client] = lru_.begin();
  return lru_.front().state;
}

Result Detector::observe(const std::string& client, const float* x, const float* y) {
  const Model& m = model_;
  const uint32_t d = m.dim, k = m.sketch_dim;
  uint8_t flags = 0;
  for (uint32_t i = 0; i < d; ++i)
    if (!(x[i] >= m.lo[i] && x[i] <= m.hi[i])) flags |= kFlagInvalid;  // NaN fails too

  float novelty = 0;
  float sketch[kMaxSketchDim];
  if (!(flags & kFlagInvalid)) {
    double total = 0, in_sketch = 0, mahal = 0;
    for (uint32_t i = 0; i < d; ++i) total += double(x[i] - m.mean[i]) * (x[i] - m.mean[i]);
    for (uint32_t j = 0; j < k; ++j) {
      const float* row = &m.components[size_t{j} * d];
      float z = 0;
      for (uint32_t i = 0; i < d; ++i) z += row[i] * (x[i] - m.mean[i]);
      sketch[j] = z;
      in_sketch += double(z) * z;
      const double u = (z - m.sketch_center[j]) / m.sketch_scale[j];
      mahal += u * u;
    }
    const double resid = std::sqrt(std::max(0.0, total - in_sketch));
    const double score = 0.5 * std::sqrt(mahal / k) / m.mahal_ref + 0.5 * resid / m.resid_ref;
    novelty = static_cast<float>(std::min<double>(score, m.novelty_cap));
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
    if (top1 - top2 < m.low_margin) flags |= kFlagLowMargin;
  }

  std::lock_guard<std::mutex> lock(mu_);
  ClientState& s = touch(client);
  if (!(flags & kFlagInvalid)) {
    // Out-of-domain queries have their own signal; here they would only swamp the novelty sum.
    s.cusum_ = std::max(0.0f, s.cusum_ + novelty - m.novelty_slack);
    float nearest = std::numeric_limits<float>::infinity();
    for (uint32_t e = 0; e < s.filled_; ++e) {
      const float* r = &s.sketches_[size_t{e} * k];
      float dist = 0;
      for (uint32_t j = 0; j < k; ++j) dist += (sketch[j] - r[j]) * (sketch[j] - r[j]);
      nearest = std::min(nearest, dist);
    }
    // An exact resubmit (identical sketch) tells a thief nothing new: it neither extends a chain
    // nor takes a history slot.
    if (nearest > 0) {
      if (nearest <= m.near_dist * m.near_dist) flags |= kFlagChain;
      std::memcpy(&s.sketches_[size_t{s.next_} * k], sketch, k * sizeof(float));
      s.next_ = (s.next_ + 1) % limits_.reservoir;
      s.filled_ = std::min(s.filled_ + 1, limits_.reservoir);
    }
    uint32_t cell = 0;
    for (uint32_t j = 0; j < kCoverageBits; ++j) cell |= uint32_t{sketch[j] > m.sketch_center[j]} << j;
    const uint64_t bit = uint64_t{1} << (cell % 64);
    if (!(s.cells_[cell / 64] & bit)) {
      s.cells_[cell / 64] |= bit;
      ++s.coverage_;
    }
  }
  return finish(s, flags);
}

Result Detector::observe_malformed(const std::string& client) {
  std::lock_guard<std::mutex> lock(mu_);
  return finish(touch(client), kFlagInvalid);
}

Result Detector::finish(ClientState& s, uint8_t flags) {
  const uint32_t w = limits_.window;
  s.flags_[s.head_] = flags;
  s.head_ = (s.head_ + 1) % w;
  ++s.queries_;

  Result r;
  uint32_t counts[3] = {0, 0, 0};
  for (uint32_t i = 0; i < w; ++i) {  // counted afresh each time: W is small
    for (int b = 0; b < 3; ++b) counts[b] += (s.flags_[i] >> b) & 1u;
  }
  r.stats[kInvalid] = static_cast<float>(counts[0]);
  r.stats[kNovelty] = s.cusum_;
  r.stats[kChain] = static_cast<float>(counts[1]);
  r.stats[kLowMargin] = static_cast<float>(counts[2]);
  r.stats[kCoverage] = static_cast<float>(s.coverage_);
  r.stats[kVolume] = static_cast<float>(s.queries_);
  const auto& t = model_.thresholds;
  r.stats[kCombined] = r.stats[kNovelty] / t[kNovelty] + r.stats[kChain] / t[kChain] +
                       r.stats[kLowMargin] / t[kLowMargin];
  for (int j = 0; j < kSignalCount; ++j) r.risk = std::max(r.risk, r.stats[j] / t[j]);

  if (r.risk >= 1.0f && s.first_alert_query_ == 0) {
    s.first_alert_query_ = s.queries_;
    r.first_alert = true;
  }
  s.peak_risk_ = std::max(s.peak_risk_, r.risk);
  r.peak_risk = s.peak_risk_;
  r.queries = s.queries_;
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

size_t Detector::state_bytes_per_client() const { return ClientState(model_, limits_).bytes(); }

std::string Detector::save() const {
  std::lock_guard<std::mutex> lock(mu_);
  Writer w;
  for (char c : kStateMagic) w.u8(static_cast<uint8_t>(c));
  w.u32(kStateVersion);
  w.u32(model_.dim);
  w.u32(model_.sketch_dim);
  w.u32(limits_.window);
  w.u32(limits_.reservoir);
  w.u64(evictions_);
  w.u64(lru_.size());
  for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
    const ClientState& s = it->state;
    w.u32(static_cast<uint32_t>(it->id.size()));
    w.out += it->id;
    w.u64(s.queries_);
    w.u64(s.first_alert_query_);
    w.f32(s.peak_risk_);
    w.u32(s.head_);
    w.u32(s.filled_);
    w.u32(s.next_);
    w.f32(s.cusum_);
    for (uint8_t f : s.flags_) w.u8(f);
    for (float v : s.sketches_) w.f32(v);
    for (uint64_t c : s.cells_) w.u64(c);
  }
  return w.out;
}

std::string Detector::restore(const std::string& blob) {
  Reader r(blob);
  std::string magic;
  uint32_t version, dim, sketch_dim, window, reservoir;
  uint64_t evictions, count;
  if (!r.bytes(&magic, 4) || magic != std::string(kStateMagic, 4)) return "not a detector state snapshot";
  if (!r.u32(&version) || version != kStateVersion) return "unsupported detector state version";
  if (!r.u32(&dim) || !r.u32(&sketch_dim) || !r.u32(&window) || !r.u32(&reservoir) || !r.u64(&evictions) ||
      !r.u64(&count))
    return "truncated detector state";
  if (dim != model_.dim || sketch_dim != model_.sketch_dim || window != limits_.window ||
      reservoir != limits_.reservoir)
    return "detector state was saved under different sizes";
  if (count > limits_.max_clients) return "detector state holds more clients than max_clients";

  std::list<Entry> lru;
  std::unordered_map<std::string, std::list<Entry>::iterator> index;
  for (uint64_t n = 0; n < count; ++n) {
    uint32_t id_len;
    std::string id;
    if (!r.u32(&id_len) || id_len > kMaxClientIdLen || !r.bytes(&id, id_len)) return "truncated detector state";
    if (index.count(id)) return "duplicate client id in detector state";
    ClientState s(model_, limits_);
    bool ok = r.u64(&s.queries_) && r.u64(&s.first_alert_query_) && r.f32(&s.peak_risk_) && r.u32(&s.head_) &&
              r.u32(&s.filled_) && r.u32(&s.next_) && r.f32(&s.cusum_);
    for (uint8_t& f : s.flags_) ok = ok && r.u8(&f);
    for (float& v : s.sketches_) ok = ok && r.f32(&v);
    for (uint64_t& c : s.cells_) ok = ok && r.u64(&c);
    if (!ok) return "truncated detector state";
    uint32_t coverage = 0;
    for (uint64_t c : s.cells_) coverage += static_cast<uint32_t>(std::bitset<64>(c).count());
    s.coverage_ = coverage;
    bool sane = s.head_ < window && s.filled_ <= reservoir && s.next_ < reservoir &&
                s.first_alert_query_ <= s.queries_ && std::isfinite(s.peak_risk_) && s.peak_risk_ >= 0 &&
                std::isfinite(s.cusum_) && s.cusum_ >= 0;
    for (uint8_t f : s.flags_) sane = sane && f < 8;
    for (float v : s.sketches_) sane = sane && std::isfinite(v);
    if (!sane) return "detector state holds out-of-range values";
    lru.push_front(Entry{std::move(id), std::move(s)});
    index[lru.front().id] = lru.begin();
  }
  if (!r.done()) return "trailing bytes after detector state";
  std::lock_guard<std::mutex> lock(mu_);
  lru_ = std::move(lru);
  index_ = std::move(index);
  evictions_ = evictions;
  return {};
}

}  // namespace edgeguard::detect
