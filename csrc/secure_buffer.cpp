#include "secure_buffer.h"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
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

}  // namespace edgeguard
