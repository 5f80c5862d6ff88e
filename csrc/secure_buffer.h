// Secure memory for decrypted model payloads: a private anonymous mapping between two guard pages,
// excluded from core dumps and from forked children, locked in RAM when the process may, and wiped
// with OPENSSL_cleanse before it is unlocked and unmapped.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgeguard {

class SecureRegion {
 public:
  // Maps `size` bytes (rounded up to whole pages, at least one) plus a PROT_NONE page either side.
  // Throws std::system_error if the mapping itself fails; locking is best effort (see lock_errno).
  explicit SecureRegion(size_t size);
  ~SecureRegion();
  SecureRegion(const SecureRegion&) = delete;
  SecureRegion& operator=(const SecureRegion&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool locked() const { return locked_; }
  int lock_errno() const { return lock_errno_; }  // 0 when locked
  bool dontdump() const { return dontdump_; }
  // "wipeonfork" (children see zeros), "dontfork" (children see no mapping) or "none".
  const char* fork_protection() const { return fork_protection_; }

  // Zeroes every byte, unlocks and releases the pages to the kernel; the range stays mapped
  // (reads give zeros) until destruction, so a reader that still holds a pointer can never fault.
  // Calling it again wipes whatever a late writer put there since (only pages that are resident
  // again are touched); the destructor does so too.
  void wipe();
  // Write-protects the data pages (true) or makes them writable again (false). Throws on failure.
  void set_readonly(bool readonly);

 private:
  uint8_t* base_ = nullptr;  // start of the whole mapping, first guard page
  size_t mapped_ = 0;        // whole mapping, guard pages included
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t data_span_ = 0;     // size_ rounded up to pages
  bool locked_ = false;
  int lock_errno_ = 0;
  bool dontdump_ = false;
  bool readonly_ = false;
  bool wiped_ = false;

  void wipe_resident();
  const char* fork_protection_ = "none";
};

// prctl(PR_SET_DUMPABLE, 0): no core dumps, and /proc/<pid>/mem and ptrace need CAP_SYS_PTRACE.
// Returns 0 or errno.
int set_non_dumpable();
// Returns prctl(PR_GET_DUMPABLE): 1 dumpable, 0 not, -1 on error.
int get_dumpable();

// Overwrites up to `bytes` of the calling thread's stack below the caller's frame with zeros
// (OPENSSL_cleanse), never closer than 64 KiB to the end of the thread's stack. Kernels that
// copy weights into stack buffers (MLAS packs GEMM panels there) leave them behind when they
// return; this clears them. Returns the number of bytes wiped.
size_t wipe_stack(size_t bytes);

// Starts `count` threads at once with default attributes, each of which wipes `bytes` of its own
// stack before all exit together. glibc keeps the stacks of exited threads in a cache (40 MiB by
// default) and hands them to the next threads created with the same size, unwiped: threads of a
// destroyed thread pool leave their stacks there. Returns the threads that ran (fewer if thread
// creation failed).
unsigned wipe_cached_thread_stacks(unsigned count, size_t bytes);

// mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT): every page of the process, present and
// future, stays in RAM once touched (nothing is faulted in ahead). Returns 0 or errno (ENOMEM or
// EPERM without CAP_IPC_LOCK and a large enough RLIMIT_MEMLOCK).
int lock_all_memory();
// True once lock_all_memory() succeeded in this process.
bool all_memory_locked();

// glibc's mallopt(M_PERTURB, byte): free() fills every chunk it keeps with `byte` (and malloc
// fills new chunks with ~byte); chunks of the thread cache (tcache, up to 1032 bytes) are kept
// unfilled. 0 turns it off. Returns false where the C library is not glibc.
bool set_malloc_perturb(int byte);
// The byte last set by set_malloc_perturb (0: off).
int malloc_perturb();

// The stack size glibc gives a thread created with default attributes.
size_t default_thread_stack_size();

}  // namespace edgeguard
