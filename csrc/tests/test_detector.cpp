// Native unit tests of the extraction-query detector: scoring, bounded client tracking, and the
// state snapshot (round trip, and every malformed snapshot refused with the clients kept).
// Harness and usage: check.h.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "detector.h"

using namespace edgeguard::detect;
using edgeguard_test::Case;

namespace {

constexpr uint32_t kDim = 16, kSketch = 12, kClasses = 3, kVolumeLimit = 5;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Features in [-1, 1], an identity sketch, and only the volume signal armed (alert at 5 queries).
Model model() {
  Model m;
  m.dim = kDim;
  m.input_shape = {kDim};
  m.pool = {1};
  m.sketch_dim = kSketch;
  m.classes = kClasses;
  m.mean.assign(kDim, 0.0f);
  m.components.assign(size_t{kSketch} * kDim, 0.0f);
  for (uint32_t j = 0; j < kSketch; ++j) m.components[j * kDim + j] = 1.0f;
  m.sketch_center.assign(kSketch, 0.0f);
  m.sketch_scale.assign(kSketch, 1.0f);
  m.lo = -1.0f;
  m.hi = 1.0f;
  m.repeat_dist = 0.01f;
  m.near_dist = 0.5f;
  m.low_margin = 0.1f;
  m.thresholds.fill(kInf);
  m.thresholds[kVolume] = kVolumeLimit;
  m.fleet_thresholds.fill(kInf);
  m.salt = 12345;
  return m;
}

Limits limits(uint32_t max_clients = 8, uint32_t fleet_memory = 16) {
  return Limits{16, 256, fleet_memory, 512, max_clients};
}

// Pseudo-random features in [-0.9, 0.9], a different point for every seed.
std::vector<float> query(int seed) {
  std::vector<float> x(kDim);
  uint64_t s = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(seed + 1);
  for (uint32_t i = 0; i < kDim; ++i) {
    s ^= s >> 31;
    s *= 0xbf58476d1ce4e5b9ULL;
    s ^= s >> 29;
    x[i] = static_cast<float>((s >> 11) % 1000001) / 1000000.0f * 1.8f - 0.9f;
  }
  return x;
}

const std::vector<float> kScores = {0.7f, 0.2f, 0.1f};

bool same(const Result& a, const Result& b) {
  return a.stats == b.stats && a.risk == b.risk && a.peak_risk == b.peak_risk && a.queries == b.queries &&
         a.first_alert == b.first_alert;
}

void test_invalid_model_refused() {
  Model m = model();
  m.classes = 1;
  CHECK(!validate(m, limits()).empty());
  m = model();
  m.sketch_scale[0] = 0;
  CHECK(!validate(m, limits()).empty());
  CHECK(!validate(model(), Limits{0, 256, 16, 512, 8}).empty());
  CHECK(!validate(model(), Limits{16, 100, 16, 512, 8}).empty());  // bloom bits not a multiple of 64
  m = model();
  m.pool = {kDim + 1};
  CHECK(!validate(m, limits()).empty());
  bool threw = false;
  try {
    Detector d(model(), Limits{kMaxMemory + 1, 256, 16, 512, 8});
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
  CHECK(validate(model(), limits()).empty());
}

void test_observe() {
  Detector d(model(), limits());
  for (uint64_t q = 1; q <= 7; ++q) {
    std::vector<float> x = query(static_cast<int>(q));
    Result r = d.observe("alice", x.data(), kScores.data());
    CHECK(r.queries == q);
    CHECK(r.stats[kVolume] == static_cast<float>(q));
    CHECK(r.stats[kInvalid] == 0);
    CHECK(r.risk == static_cast<float>(q) / kVolumeLimit);
    CHECK(r.first_alert == (q == kVolumeLimit));  // once, when the risk first reaches 1
    for (float s : r.stats) CHECK(std::isfinite(s));
  }
  std::vector<float> outside = query(1);
  outside[3] = 2.0f;
  CHECK(d.observe("alice", outside.data(), nullptr).stats[kInvalid] == 1);
  outside[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(d.observe("alice", outside.data(), nullptr).stats[kInvalid] == 2);
  Result bad = d.observe_malformed("alice");
  CHECK(bad.stats[kInvalid] == 3 && bad.queries == 10);
  CHECK(d.observe("bob", query(1).data(), nullptr).queries == 1);  // clients are independent
}

// The bindings' observe_batch is observe() row after row: the same rows give the same results,
// with or without class scores in between other clients' queries.
void test_batch_observe() {
  Detector a(model(), limits()), b(model(), limits());
  std::vector<float> rows;
  for (int i = 0; i < 20; ++i) {
    std::vector<float> x = query(i / 2);
    if (i % 2) x[0] += 0.2f;  // a small perturbation of the previous query extends a chain
    rows.insert(rows.end(), x.begin(), x.end());
  }
  for (int i = 0; i < 20; ++i) {
    Result ra = a.observe("c", rows.data() + i * kDim, kScores.data());
    b.observe("other", query(100 + i).data(), nullptr);
    Result rb = b.observe("c", rows.data() + i * kDim, kScores.data());
    CHECK(same(ra, rb));
  }
  Result last = a.observe("c", rows.data(), kScores.data());
  CHECK(last.stats[kChain] > 0);
  CHECK(last.peak_risk >= last.risk);
}

void test_forget_and_eviction_bounds() {
  Detector d(model(), limits(3));
  for (int c = 0; c < 5; ++c) d.observe("client" + std::to_string(c), query(c).data(), nullptr);
  CHECK(d.clients() == 3);
  CHECK(d.evictions() == 2);
  CHECK(!d.known("client0") && !d.known("client1") && d.known("client4"));
  d.observe("client2", query(2).data(), nullptr);  // now the most recently used
  d.observe("client5", query(5).data(), nullptr);
  CHECK(d.known("client2") && !d.known("client3"));
  d.forget("client2");
  CHECK(!d.known("client2") && d.clients() == 2);
  d.forget("nobody");
  CHECK(d.clients() == 2);
  CHECK(d.observe("client2", query(2).data(), nullptr).queries == 1);  // forgotten: starts over
  CHECK(d.state_bytes_per_client() > 0);
}

void add_history(Detector& d) {
  for (int i = 0; i < 30; ++i) d.observe("c" + std::to_string(i % 4), query(i % 7).data(), kScores.data());
}

void test_save_restore_round_trip() {
  Detector a(model(), limits());
  add_history(a);
  const std::string blob = a.save();
  Detector b(model(), limits());
  REQUIRE(b.restore(blob).empty());
  CHECK(b.save() == blob);
  CHECK(b.clients() == a.clients() && b.evictions() == a.evictions());
  for (int i = 0; i < 10; ++i) {
    const std::string id = "c" + std::to_string(i % 5);
    CHECK(same(a.observe(id, query(i).data(), kScores.data()), b.observe(id, query(i).data(), kScores.data())));
  }
}

void test_malformed_restore_rejected() {
  Detector source(model(), limits(8, 0));
  add_history(source);
  const std::string blob = source.save();
  Detector d(model(), limits(8, 0));
  d.observe("kept", query(1).data(), nullptr);
  const std::string before = d.save();
  std::vector<std::string> bad;
  for (size_t n = 0; n < blob.size(); n += 7) bad.push_back(blob.substr(0, n));  // truncated
  bad.push_back(blob + "x");                                                       // trailing bytes
  std::string magic = blob;
  magic[0] = 'X';
  bad.push_back(magic);
  std::string version = blob;
  version[4] = 1;  // the window-and-ring layout
  bad.push_back(version);
  std::string nan = blob;  // first client's invalid evidence: after the fixed fields
  const size_t header = 4 + 4 * 7 + 8 + 8;
  const size_t id_len = static_cast<uint8_t>(blob[header]);
  const size_t cusum = header + 4 + id_len + 8 + 8 + 4;
  nan[cusum] = 0, nan[cusum + 1] = 0, nan[cusum + 2] = static_cast<char>(0xc0), nan[cusum + 3] = 0x7f;
  bad.push_back(nan);
  for (const std::string& b : bad) {
    CHECK(!d.restore(b).empty());
    CHECK(d.save() == before);  // the current clients are kept
  }
  CHECK(d.restore(version).find("version 1 is not supported") != std::string::npos);
  Detector other_sizes(model(), Limits{32, 256, 0, 512, 8});
  CHECK(other_sizes.restore(blob) == "detector state was saved under different sizes");
  Detector fewer(model(), limits(2, 0));
  CHECK(fewer.restore(blob) == "detector state holds more clients than max_clients");
}

// A perturbation step is found however long ago its parent was sent (a memory large enough keeps
// every query), and a full memory halves its sampling rate instead of growing.
void test_memory_covers_the_whole_session() {
  Detector d(model(), Limits{512, 1u << 14, 0, 512, 8});
  std::vector<float> parent = query(1);
  d.observe("c", parent.data(), nullptr);
  int steps = 0;
  for (int i = 0; i < 400; ++i) steps += d.observe("c", query(1000 + i).data(), nullptr).event == kStep;
  CHECK(steps == 0);
  std::vector<float> child = parent;
  child[2] += 0.2f;
  const Result r = d.observe("c", child.data(), nullptr);
  CHECK(r.event == kStep && r.stats[kChain] > 0);
  CHECK(d.observe("c", child.data(), nullptr).event == kRepeat);  // an exact re-send
  CHECK(d.observe("c", parent.data(), nullptr).event == kRepeat);

  Detector small(model(), limits());
  const size_t bytes = small.state_bytes_per_client();
  for (int i = 0; i < 400; ++i) small.observe("c", query(1000 + i).data(), nullptr);
  CHECK(small.state_bytes_per_client() == bytes);
  const std::string blob = small.save();
  Detector again(model(), limits());
  REQUIRE(again.restore(blob).empty());
  CHECK(again.save() == blob);
}

void test_fleet_sees_all_clients_and_merges() {
  Detector a(model(), limits()), b(model(), limits());
  std::vector<float> parent = query(3), child = query(3);
  child[1] += 0.2f;
  a.observe("one", parent.data(), nullptr);
  const Result ra = a.observe("two", child.data(), nullptr);
  CHECK(ra.event == kNew && ra.stats[kChain] == 0);  // clients are separate...
  CHECK(ra.fleet_stats[kChain] > 0);                 // ...the fleet view is not
  Detector fleetless(model(), limits(8, 0));
  CHECK(fleetless.merge_fleet(a.save_fleet()) == "this detector keeps no fleet state");
  std::string blob = a.save_fleet();
  CHECK(!b.merge_fleet(blob.substr(0, blob.size() - 1)).empty());
  std::string bad = blob;
  bad[0] = 'X';
  CHECK(!b.merge_fleet(bad).empty());
  REQUIRE(b.merge_fleet(blob).empty());
  const Result r = b.observe("three", child.data(), nullptr);
  CHECK(r.fleet_stats[kVolume] == 3);
  CHECK(r.fleet_stats[kChain] == ra.fleet_stats[kChain]);  // merged evidence; the child is a repeat now
}

const Case kCases[] = {
    {"invalid_model_refused", test_invalid_model_refused},
    {"observe", test_observe},
    {"batch_observe", test_batch_observe},
    {"forget_and_eviction_bounds", test_forget_and_eviction_bounds},
    {"save_restore_round_trip", test_save_restore_round_trip},
    {"malformed_restore_rejected", test_malformed_restore_rejected},
    {"memory_covers_the_whole_session", test_memory_covers_the_whole_session},
    {"fleet_sees_all_clients_and_merges", test_fleet_sees_all_clients_and_merges},
};

}  // namespace

int main(int argc, char** argv) { return edgeguard_test::run_cases(kCases, argc, argv); }
