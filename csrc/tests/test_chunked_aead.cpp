// Native unit tests of the chunked AEAD engine, checked against an independent reference built in
// this file from plain one-shot EVP calls (fresh context per chunk, EVP_Digest for SHA-256).
// Harness and usage: check.h.
#include <openssl/evp.h>
#include <algorithm>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "check.h"
#include "chunked_aead.h"

using namespace edgeguard;
using edgeguard_test::Case;
using Bytes = std::vector<uint8_t>;

namespace {

const Cipher kCiphers[] = {Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305};
const char* name_of(Cipher c) { return c == Cipher::Aes256Gcm ? "aes-256-gcm" : "chacha20-poly1305"; }

// Deterministic, non-repeating test data (a repeating pattern could hide chunk mix-ups).
Bytes pattern(size_t n, uint32_t seed) {
  Bytes b(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& v : b) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    v = static_cast<uint8_t>(x);
  }
  return b;
}

struct Fixture {
  Bytes key = pattern(kKeyLen, 1);
  Bytes prefix = pattern(kNoncePrefixLen, 2);
  Bytes header = pattern(kDigestLen, 3);

  // Field by field: ChunkParams may grow optional members (left value-initialized here).
  ChunkParams params(Cipher c, uint64_t chunk, uint64_t len, unsigned threads) const {
    ChunkParams p{};
    p.cipher = c;
    p.key = key.data();
    p.nonce_prefix = prefix.data();
    p.header_digest = header.data();
    p.chunk_size = chunk;
    p.plaintext_len = len;
    p.threads = threads;
    return p;
  }
};

void be(uint8_t* p, uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

Bytes sha256(const uint8_t* p, size_t n) {
  Bytes d(32);
  unsigned int len = 0;
  if (EVP_Digest(p, n, d.data(), &len, EVP_sha256(), nullptr) != 1) std::abort();
  return d;
}

// The format as documented in chunked_aead.h, written out independently of the engine.
struct Reference {
  Bytes sealed;
  Bytes root;
};

Reference reference_seal(const Fixture& f, Cipher c, uint64_t chunk, const Bytes& pt) {
  const uint64_t count = pt.empty() ? 1 : (pt.size() + chunk - 1) / chunk;
  Reference r;
  Bytes digests;
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t off = i * chunk;
    const uint64_t n = std::min<uint64_t>(chunk, pt.size() - off);
    uint8_t nonce[12];
    std::memcpy(nonce, f.prefix.data(), 7);
    be(nonce + 7, i, 4);
    nonce[11] = (i + 1 == count) ? 1 : 0;
    uint8_t aad[40];
    std::memcpy(aad, f.header.data(), 32);
    be(aad + 32, i, 8);
    Bytes stored(n + 16);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    const EVP_CIPHER* evp = c == Cipher::Aes256Gcm ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
    int len = 0;
    bool ok = EVP_EncryptInit_ex(ctx, evp, nullptr, f.key.data(), nonce) == 1 &&
              EVP_EncryptUpdate(ctx, nullptr, &len, aad, sizeof aad) == 1 &&
              (n == 0 || EVP_EncryptUpdate(ctx, stored.data(), &len, pt.data() + off, static_cast<int>(n)) == 1) &&
              EVP_EncryptFinal_ex(ctx, stored.data() + n, &len) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, stored.data() + n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) std::abort();
    Bytes d = sha256(stored.data(), stored.size());
    digests.insert(digests.end(), d.begin(), d.end());
    r.sealed.insert(r.sealed.end(), stored.begin(), stored.end());
  }
  Bytes pre(reinterpret_cast<const uint8_t*>("edgeguard/v1 chunks"),
            reinterpret_cast<const uint8_t*>("edgeguard/v1 chunks") + 20);  // with its NUL
  uint8_t cnt[8];
  be(cnt, count, 8);
  pre.insert(pre.end(), cnt, cnt + 8);
  pre.insert(pre.end(), digests.begin(), digests.end());
  r.root = sha256(pre.data(), pre.size());
  return r;
}

bool all_zero(const Bytes& b) {
  for (uint8_t v : b)
    if (v) return false;
  return true;
}

// Seals with the engine and checks it against the reference. Returns the engine's root.
Bytes seal_checked(const Fixture& f, Cipher c, uint64_t chunk, const Bytes& pt, unsigned threads,
                   Bytes* sealed) {
  sealed->assign(sealed_len(pt.size(), chunk), 0);
  Bytes root(kDigestLen);
  CHECK(seal_chunks(f.params(c, chunk, pt.size(), threads), pt.data(), sealed->data(), root.data()));
  Reference ref = reference_seal(f, c, chunk, pt);
  CHECK(*sealed == ref.sealed);
  CHECK(root == ref.root);
  return root;
}

// Opens with dst pre-filled with junk so that "wiped" is observable.
bool open_mem(const Fixture& f, Cipher c, uint64_t chunk, uint64_t len, const Bytes& sealed,
              const Bytes& root, unsigned threads, Bytes* out) {
  out->assign(len, 0xA5);
  ChunkSource src;
  src.data = sealed.data();
  return open_chunks(f.params(c, chunk, len, threads), src, out->data(), root.data());
}

// A temporary file holding `junk` bytes and then the sealed chunks; removed on destruction.
struct TempFile {
  int fd = -1;
  TempFile(const Bytes& junk, const Bytes& sealed) {
    char path[] = "/tmp/edgeguard-native-XXXXXX";
    fd = mkstemp(path);
    if (fd < 0) std::abort();
    unlink(path);
    Bytes all(junk);
    all.insert(all.end(), sealed.begin(), sealed.end());
    if (write(fd, all.data(), all.size()) != static_cast<ssize_t>(all.size())) std::abort();
  }
  ~TempFile() { close(fd); }
};

// ---------------------------------------------------------------------------------------------
// Cases

void test_geometry() {
  CHECK(chunk_count(0, 16) == 1);
  CHECK(chunk_count(1, 16) == 1);
  CHECK(chunk_count(16, 16) == 1);
  CHECK(chunk_count(17, 16) == 2);
  CHECK(sealed_len(0, 16) == 16);
  CHECK(sealed_len(33, 16) == 33 + 3 * 16);
  CHECK(resolve_threads(4, 2) == 2);
  CHECK(resolve_threads(3, 100) == 3);
  CHECK(resolve_threads(0, 1) == 1);
  Cipher c;
  CHECK(parse_cipher("aes-256-gcm", &c) && c == Cipher::Aes256Gcm);
  CHECK(parse_cipher("chacha20-poly1305", &c) && c == Cipher::ChaCha20Poly1305);
  CHECK(!parse_cipher("AES-256-GCM", &c));
}

// Lengths around every chunk boundary, for two chunk sizes, both ciphers, against the reference.
void test_round_trip_boundaries() {
  Fixture f;
  for (Cipher c : kCiphers) {
    for (uint64_t chunk : std::initializer_list<uint64_t>{16, 4096}) {
      for (uint64_t len : std::initializer_list<uint64_t>{0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk - 1, 2 * chunk,
                           2 * chunk + 1, 3 * chunk + 7}) {
        Bytes pt = pattern(len, static_cast<uint32_t>(len + chunk));
        Bytes sealed, out;
        Bytes root = seal_checked(f, c, chunk, pt, 0, &sealed);
        bool ok = open_mem(f, c, chunk, len, sealed, root, 0, &out);
        if (!ok || out != pt)
          std::fprintf(stderr, "  %s chunk=%llu len=%llu\n", name_of(c), (unsigned long long)chunk,
                       (unsigned long long)len);
        CHECK(ok);
        CHECK(out == pt);
      }
    }
  }
}

// Flipping any single bit of any stored byte must fail the whole open and leave dst all zero.
void test_tamper_any_byte() {
  Fixture f;
  for (Cipher c : kCiphers) {
    const uint64_t chunk = 16;
    Bytes pt = pattern(40, 7);  // 3 chunks, the last one short
    Bytes sealed, out;
    Bytes root = seal_checked(f, c, chunk, pt, 0, &sealed);
    for (size_t i = 0; i < sealed.size(); ++i) {
      for (uint8_t bit : std::initializer_list<uint8_t>{0x01, 0x80}) {
        Bytes bad = sealed;
        bad[i] ^= bit;
        bool ok = open_mem(f, c, chunk, pt.size(), bad, root, 2, &out);
        if (ok || !all_zero(out)) std::fprintf(stderr, "  %s byte %zu survived tampering\n", name_of(c), i);
        CHECK(!ok);
        CHECK(all_zero(out));
      }
    }
  }
}

// Swapping two whole stored chunks, or a wrong key/prefix/header/root, must also fail and wipe.
void test_wrong_inputs_fail_and_wipe() {
  for (Cipher c : kCiphers) {
    Fixture f;
    const uint64_t chunk = 32;
    Bytes pt = pattern(4 * chunk, 11);
    Bytes sealed, out;
    Bytes root = seal_checked(f, c, chunk, pt, 0, &sealed);

    Bytes bad_root = root;
    bad_root[31] ^= 1;
    CHECK(!open_mem(f, c, chunk, pt.size(), sealed, bad_root, 0, &out));
    CHECK(all_zero(out));

    Bytes swapped = sealed;
    std::swap_ranges(swapped.begin(), swapped.begin() + chunk + 16, swapped.begin() + chunk + 16);
    CHECK(!open_mem(f, c, chunk, pt.size(), swapped, root, 0, &out));
    CHECK(all_zero(out));

    // Claiming a shorter payload drops the "last chunk" flag from the real last chunk.
    CHECK(!open_mem(f, c, chunk, pt.size() - chunk, sealed, root, 0, &out));
    CHECK(all_zero(out));

    for (Bytes Fixture::*field : {&Fixture::key, &Fixture::prefix, &Fixture::header}) {
      Fixture g;
      (g.*field)[0] ^= 1;
      CHECK(!open_mem(g, c, chunk, pt.size(), sealed, root, 0, &out));
      CHECK(all_zero(out));
    }

    // The other cipher with the same key must not open it either.
    Cipher other = c == Cipher::Aes256Gcm ? Cipher::ChaCha20Poly1305 : Cipher::Aes256Gcm;
    CHECK(!open_mem(f, other, chunk, pt.size(), sealed, root, 0, &out));
    CHECK(all_zero(out));
  }
}

// The thread count is a scheduling detail: 1..4 threads give byte-identical output and roots.
void test_thread_counts_agree() {
  Fixture f;
  for (Cipher c : kCiphers) {
    const uint64_t chunk = 64;
    Bytes pt = pattern(37 * chunk + 5, 13);
    Bytes first_sealed, first_root;
    for (unsigned t = 1; t <= 4; ++t) {
      Bytes sealed, out;
      Bytes root = seal_checked(f, c, chunk, pt, t, &sealed);
      if (t == 1) {
        first_sealed = sealed;
        first_root = root;
      }
      CHECK(sealed == first_sealed);
      CHECK(root == first_root);
      CHECK(open_mem(f, c, chunk, pt.size(), sealed, root, t, &out));
      CHECK(out == pt);
      uint8_t droot[kDigestLen];
      ChunkSource src;
      src.data = sealed.data();
      CHECK(digest_chunks(chunk, pt.size(), src, t, droot));
      CHECK(Bytes(droot, droot + kDigestLen) == root);
    }
  }
}

// Reading the stored chunks with pread from a file at an offset gives the same result as memory.
void test_fd_source_matches_memory() {
  Fixture f;
  for (Cipher c : kCiphers) {
    const uint64_t chunk = 1000;
    Bytes pt = pattern(5 * chunk + 123, 17);
    Bytes sealed, out_mem, out_fd;
    Bytes root = seal_checked(f, c, chunk, pt, 0, &sealed);
    CHECK(open_mem(f, c, chunk, pt.size(), sealed, root, 3, &out_mem));

    Bytes junk = pattern(4097, 19);  // an unaligned header-sized prefix
    TempFile file(junk, sealed);
    ChunkSource src;
    src.fd = file.fd;
    src.offset = junk.size();
    out_fd.assign(pt.size(), 0xA5);
    CHECK(open_chunks(f.params(c, chunk, pt.size(), 3), src, out_fd.data(), root.data()));
    CHECK(out_fd == out_mem);
    CHECK(out_fd == pt);

    uint8_t droot[kDigestLen];
    CHECK(digest_chunks(chunk, pt.size(), src, 2, droot));
    CHECK(Bytes(droot, droot + kDigestLen) == root);

    // A file one byte short: the read of the last chunk fails, so open fails and wipes.
    Bytes cut(sealed.begin(), sealed.end() - 1);
    TempFile short_file(junk, cut);
    src.fd = short_file.fd;
    out_fd.assign(pt.size(), 0xA5);
    CHECK(!open_chunks(f.params(c, chunk, pt.size(), 2), src, out_fd.data(), root.data()));
    CHECK(all_zero(out_fd));
    CHECK(!digest_chunks(chunk, pt.size(), src, 2, droot));

    // A tampered byte in the file behaves exactly like one in memory.
    Bytes bad = sealed;
    bad[bad.size() / 2] ^= 0x10;
    TempFile bad_file(junk, bad);
    src.fd = bad_file.fd;
    out_fd.assign(pt.size(), 0xA5);
    CHECK(!open_chunks(f.params(c, chunk, pt.size(), 2), src, out_fd.data(), root.data()));
    CHECK(all_zero(out_fd));
  }
}

// digest_chunks needs no key and must reproduce the root that seal_chunks returned.
void test_digest_equals_seal_root() {
  Fixture f;
  for (Cipher c : kCiphers) {
    for (uint64_t len : std::initializer_list<uint64_t>{0, 1, 255, 256, 257, 10000}) {
      Bytes pt = pattern(len, 23);
      Bytes sealed;
      Bytes root = seal_checked(f, c, 256, pt, 0, &sealed);
      uint8_t droot[kDigestLen];
      ChunkSource src;
      src.data = sealed.data();
      CHECK(digest_chunks(256, len, src, 0, droot));
      CHECK(Bytes(droot, droot + kDigestLen) == root);
    }
  }
}

// Sealing the same plaintext twice under one nonce prefix is deterministic (the caller must use a
// fresh prefix per file); a different prefix changes every chunk.
void test_nonce_prefix_changes_every_chunk() {
  for (Cipher c : kCiphers) {
    Fixture f, g;
    g.prefix[6] ^= 1;
    Bytes pt = pattern(3 * 128, 29);
    Bytes a, b;
    seal_checked(f, c, 128, pt, 0, &a);
    seal_checked(g, c, 128, pt, 0, &b);
    for (size_t i = 0; i < 3; ++i) {
      size_t off = i * (128 + 16);
      CHECK(!std::equal(a.begin() + off, a.begin() + off + 128 + 16, b.begin() + off));
    }
  }
}

// Near 2^64 the chunk count used to wrap to 0; thread requests are clamped to kMaxThreads.
void test_limits_do_not_wrap() {
  CHECK(chunk_count(UINT64_MAX, 1 << 20) == (1ull << 44));
  CHECK(chunk_count(UINT64_MAX - 16, 1 << 20) == (1ull << 44));
  CHECK(chunk_count(UINT64_MAX, 1) == UINT64_MAX);
  CHECK(resolve_threads(65536, 1 << 20) == kMaxThreads);
  CHECK(resolve_threads(UINT32_MAX, 3) == 3);
  CHECK(resolve_threads(0, 1 << 20) >= 1 && resolve_threads(0, 1 << 20) <= kMaxThreads);
}

const Case kCases[] = {
    {"geometry", test_geometry},
    {"round_trip_boundaries", test_round_trip_boundaries},
    {"tamper_any_byte", test_tamper_any_byte},
    {"wrong_inputs_fail_and_wipe", test_wrong_inputs_fail_and_wipe},
    {"thread_counts_agree", test_thread_counts_agree},
    {"fd_source_matches_memory", test_fd_source_matches_memory},
    {"digest_equals_seal_root", test_digest_equals_seal_root},
    {"nonce_prefix_changes_every_chunk", test_nonce_prefix_changes_every_chunk},
    {"limits_do_not_wrap", test_limits_do_not_wrap},
};

}  // namespace

int main(int argc, char** argv) { return edgeguard_test::run_cases(kCases, argc, argv); }
