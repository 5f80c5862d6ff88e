#include "secure_buffer.h"

#include <alloca.h>
#include <malloc.h>
#include <cstdint>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <vector>
#include <cerrno>
#include <exception>
#include <system_error>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18  // Linux >= 4.14; older glibc headers lack the name
#endif

namespace edgeguard {

namespace {
size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
}  // namespace

SecureRegion::SecureRegion(size_t size) : size_(size) {
  const size_t page = page_size();
  if (size > SIZE_MAX - 3 * page) throw std::system_error(ENOMEM, std::generic_category(), "secure buffer too large");
  data_span_ = size == 0 ? page : (size + page - 1) / page * page;
  mapped_ = data_span_ + 2 * page;
  void* p = mmap(nullptr, mapped_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  base_ = static_cast<uint8_t*>(p);
  data_ = base_ + page;
  if (mprotect(data_, data_span_, PROT_READ | PROT_WRITE) != 0) {
    const int err = errno;
    munmap(base_, mapped_);
    throw std::system_error(err, std::generic_category(), "mprotect");
  }
  dontdump_ = madvise(base_, mapped_, MADV_DONTDUMP) == 0;
  // Prefer WIPEONFORK: a forked child that touches a view reads zeros instead of faulting.
  if (madvise(base_, mapped_, MADV_WIPEONFORK) == 0) {
    fork_protection_ = "wipeonfork";
  } else if (madvise(base_, mapped_, MADV_DONTFORK) == 0) {
    fork_protection_ = "dontfork";
  }
  // Unprivileged processes usually may lock only a few MiB (RLIMIT_MEMLOCK): report, never fail.
  if (mlock(data_, data_span_) == 0) {
    locked_ = true;
  } else {
    lock_errno_ = errno;
  }
}

void SecureRegion::set_readonly(bool readonly) {
  if (readonly == readonly_) return;
  if (mprotect(data_, data_span_, readonly ? PROT_READ : PROT_READ | PROT_WRITE) != 0)
    throw std::system_error(errno, std::generic_category(), "mprotect");
  readonly_ = readonly;
}

void SecureRegion::wipe() {
  // Read-only pages must become writable to be wiped; a failure here would leave plaintext behind,
  // so it is fatal rather than silently skipped.
  if (readonly_ && mprotect(data_, data_span_, PROT_READ | PROT_WRITE) != 0) std::terminate();
  readonly_ = false;
  if (wiped_) {
    wipe_resident();
  } else {
    OPENSSL_cleanse(data_, data_span_);
  }
  if (locked_) munlock(data_, data_span_);
  locked_ = false;
  // Give the (now zero) pages back: a wiped buffer kept mapped for late readers costs no RAM,
  // and reading it yields fresh zero pages.
  madvise(data_, data_span_, MADV_DONTNEED);
  wiped_ = true;
}

// After the first wipe every page was released, so a resident page is one written (or read) since:
// wipe those only, instead of faulting in the whole range again.
void SecureRegion::wipe_resident() {
  const size_t page = page_size();
  unsigned char resident[256];
  for (size_t off = 0; off < data_span_; off += sizeof resident * page) {
    const size_t len = std::min(data_span_ - off, sizeof resident * page);
    if (mincore(data_ + off, len, resident) != 0) {
      OPENSSL_cleanse(data_ + off, len);  // cannot tell: wipe it all
      continue;
    }
    for (size_t i = 0; i * page < len; ++i)
      if (resident[i] & 1) OPENSSL_cleanse(data_ + off + i * page, page);
  }
}

SecureRegion::~SecureRegion() {
  wipe();
  munmap(base_, mapped_);
}

int set_non_dumpable() { return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : errno; }

int get_dumpable() { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }

namespace {

constexpr size_t kStackMargin = 64 * 1024;  // left untouched at the far end of a thread's stack

// The lowest usable address of the calling thread's stack, looked up once per thread
// (pthread_getattr_np reads /proc/self/maps for the main thread).
uintptr_t stack_low() {
  thread_local uintptr_t low = 0;
  if (low == 0) {
    pthread_attr_t attr;
    void* addr = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      if (pthread_attr_getstack(&attr, &addr, &size) != 0) addr = nullptr;
      pthread_attr_destroy(&attr);
    }
    low = addr == nullptr ? UINTPTR_MAX : reinterpret_cast<uintptr_t>(addr);
  }
  return low;
}

// A frame of `bytes` below the caller, zeroed through a call the compiler cannot elide.
__attribute__((noinline)) void wipe_below(size_t bytes) {
  auto* p = static_cast<unsigned char*>(alloca(bytes));
  OPENSSL_cleanse(p, bytes);
  asm volatile("" : : "r"(p) : "memory");
}

struct WipeGate {
  size_t bytes;
  std::mutex mu;
  std::condition_variable cv;
  unsigned arrived = 0;
  bool released = false;
};

void* wipe_thread(void* arg) {
  auto* gate = static_cast<WipeGate*>(arg);
  wipe_stack(gate->bytes);
  std::unique_lock<std::mutex> lock(gate->mu);
  ++gate->arrived;
  gate->cv.notify_all();
  // Every thread holds its stack until all have wiped, so no two reuse the same cached stack.
  gate->cv.wait(lock, [gate] { return gate->released; });
  return nullptr;
}

}  // namespace

size_t wipe_stack(size_t bytes) {
  unsigned char here;
  const uintptr_t sp = reinterpret_cast<uintptr_t>(&here);
  const uintptr_t low = stack_low();
  if (low == UINTPTR_MAX || sp <= low + kStackMargin) return 0;
  const size_t n = std::min(bytes, static_cast<size_t>(sp - low - kStackMargin)) & ~static_cast<size_t>(63);
  if (n != 0) wipe_below(n);
  return n;
}

unsigned wipe_cached_thread_stacks(unsigned count, size_t bytes) {
  WipeGate gate;
  gate.bytes = bytes;
  std::vector<pthread_t> threads;
  threads.reserve(count);
  for (unsigned i = 0; i < count; ++i) {
    pthread_t t;
    if (pthread_create(&t, nullptr, wipe_thread, &gate) != 0) break;  // RLIMIT_NPROC, address space
    threads.push_back(t);
  }
  {
    std::unique_lock<std::mutex> lock(gate.mu);
    gate.cv.wait(lock, [&] { return gate.arrived == threads.size(); });
    gate.released = true;
  }
  gate.cv.notify_all();
  for (pthread_t t : threads) pthread_join(t, nullptr);
  return static_cast<unsigned>(threads.size());
}

#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4  // Linux >= 4.4
#endif

namespace {
std::atomic<bool> g_all_locked{false};
std::atomic<int> g_perturb{0};
}  // namespace

int lock_all_memory() {
  if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0) return errno;
  g_all_locked = true;
  return 0;
}

bool all_memory_locked() { return g_all_locked; }

bool set_malloc_perturb(int byte) {
#if defined(__GLIBC__) && defined(M_PERTURB)
  if (mallopt(M_PERTURB, byte & 0xff) != 1) return false;
  g_perturb = byte & 0xff;
  return true;
#else
  (void)byte;
  return false;
#endif
}

int malloc_perturb() { return g_perturb; }

size_t default_thread_stack_size() {
  pthread_attr_t attr;
  size_t size = 0;
  if (pthread_getattr_default_np(&attr) == 0) {
    pthread_attr_getstacksize(&attr, &size);
    pthread_attr_destroy(&attr);
  }
  return size;
}

}  // namespace edgeguard
