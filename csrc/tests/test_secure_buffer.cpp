// Native unit tests of SecureRegion: the mapping, its lock status, write protection, and wiping
// (also of whatever is written after the first wipe). Guard-page faults are tested from Python,
// in a child process. Harness and usage: check.h.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "secure_buffer.h"

using namespace edgeguard;
using edgeguard_test::Case;

namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

// Pages of [p, p + n) that are resident (mincore), counted before anything reads them.
size_t resident_pages(const uint8_t* p, size_t n) {
  std::vector<unsigned char> v((n + kPage - 1) / kPage);
  if (mincore(const_cast<uint8_t*>(p), n, v.data()) != 0) return SIZE_MAX;
  size_t count = 0;
  for (unsigned char c : v) count += c & 1;
  return count;
}

// The permissions ("rw-p", "r--p", ...) of the mapping containing p, from /proc/self/maps.
std::string permissions(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    std::istringstream in(line);
    std::string range, perms;
    in >> range >> perms;
    const size_t dash = range.find('-');
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (lo <= a && a < hi) return perms;
  }
  return "";
}

void test_alloc() {
  SecureRegion r(3 * kPage + 5);
  CHECK(r.size() == 3 * kPage + 5);
  CHECK(reinterpret_cast<uintptr_t>(r.data()) % kPage == 0);
  std::memset(r.data(), 0xa5, 4 * kPage);  // the whole rounded-up span is usable
  CHECK(r.data()[4 * kPage - 1] == 0xa5);
  CHECK(permissions(r.data()) == "rw-p");
  CHECK(permissions(r.data() - 1) == "---p");  // guard pages either side
  CHECK(permissions(r.data() + 4 * kPage) == "---p");
  const std::string fp = r.fork_protection();
  CHECK(fp == "wipeonfork" || fp == "dontfork" || fp == "none");
  SecureRegion empty(0);
  CHECK(empty.size() == 0 && empty.data() != nullptr);
  empty.data()[kPage - 1] = 1;  // still one page
}

void test_lock_status() {
  SecureRegion r(kPage);
  CHECK(r.locked() == (r.lock_errno() == 0));
  r.wipe();
  CHECK(!r.locked());
}

void test_make_readonly() {
  SecureRegion r(2 * kPage);
  r.data()[0] = 7;
  r.set_readonly(true);
  CHECK(permissions(r.data()) == "r--p");
  CHECK(r.data()[0] == 7);
  r.set_readonly(true);  // no change
  r.set_readonly(false);
  CHECK(permissions(r.data()) == "rw-p");
  r.data()[1] = 8;
  r.set_readonly(true);
  r.wipe();  // a read-only region is made writable to be wiped
  CHECK(permissions(r.data()) == "rw-p");
  CHECK(all_zero(r.data(), 2 * kPage));
}

void test_close_wipes() {
  const size_t n = 8 * kPage;
  SecureRegion r(n);
  std::memset(r.data(), 0x5a, n);
  r.wipe();
  CHECK(resident_pages(r.data(), n) == 0);  // zeroed and given back
  CHECK(all_zero(r.data(), n));
  CHECK(!r.locked());
  // A late writer refills pages; wiping again clears exactly those and releases them again.
  std::memset(r.data() + 2 * kPage, 0x77, kPage);
  r.wipe();
  CHECK(resident_pages(r.data(), n) == 0);
  CHECK(all_zero(r.data(), n));
}

// Leaves a 32 KiB pattern in a frame that is gone when it returns.
__attribute__((noinline)) void leave_pattern() {
  volatile unsigned char buf[32 * 1024];
  for (size_t i = 0; i < sizeof(buf); ++i) buf[i] = 0xa5;
}

// Counts pattern bytes in a fresh (uninitialized: that is the point) frame at about the same depth.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((noinline)) size_t count_pattern() {
  volatile unsigned char buf[32 * 1024];
  size_t n = 0;
  for (size_t i = 0; i < sizeof(buf); ++i) n += buf[i] == 0xa5;
  return n;
}
#pragma GCC diagnostic pop

void test_wipe_stack() {
  leave_pattern();
  CHECK(count_pattern() > 16 * 1024);  // the dead frame's bytes are still there
  leave_pattern();
  const size_t wiped = edgeguard::wipe_stack(128 * 1024);
  CHECK(wiped == 128 * 1024);
  // All but what lies in wipe_stack's own two small frames (unused padding there keeps old bytes).
  CHECK(count_pattern() < 256);
  CHECK(edgeguard::wipe_stack(static_cast<size_t>(1) << 40) % 64 == 0);  // clamped to the stack, no fault
}

void test_wipe_cached_thread_stacks() {
  CHECK(edgeguard::default_thread_stack_size() > 0);
  CHECK(edgeguard::wipe_cached_thread_stacks(4, 64 * 1024) == 4);
  CHECK(edgeguard::wipe_cached_thread_stacks(0, 64 * 1024) == 0);
}

const Case kCases[] = {
    {"alloc", test_alloc},
    {"lock_status", test_lock_status},
    {"make_readonly", test_make_readonly},
    {"close_wipes", test_close_wipes},
    {"wipe_stack", test_wipe_stack},
    {"wipe_cached_thread_stacks", test_wipe_cached_thread_stacks},
};

}  // namespace

int main(int argc, char** argv) { return edgeguard_test::run_cases(kCases, argc, argv); }
