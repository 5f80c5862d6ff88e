#include "chunked_aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

namespace edgeguard {
namespace {

constexpr char kRootLabel[] = "edgeguard/v1 chunks";  // hashed with its terminating NUL
constexpr uint64_t kSlice = 32 * 1024;  // hash/cipher interleaving step: fits in L1/L2

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct CipherFree {
  void operator()(EVP_CIPHER* c) const { EVP_CIPHER_free(c); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct MdFree {
  void operator()(EVP_MD* m) const { EVP_MD_free(m); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, CipherFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using MdPtr = std::unique_ptr<EVP_MD, MdFree>;

void put_be32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
void put_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

CipherPtr fetch_cipher(Cipher c) {
  return CipherPtr(EVP_CIPHER_fetch(nullptr, c == Cipher::Aes256Gcm ? "AES-256-GCM" : "ChaCha20-Poly1305",
                                    nullptr));
}

// One chunk's geometry.
struct Span {
  uint64_t pt_off, pt_len, ct_off;  // ct_off: offset of the stored chunk (ciphertext || tag)
  bool last;
};

Span chunk_span(uint64_t i, uint64_t chunk_size, uint64_t plaintext_len, uint64_t count) {
  Span s;
  s.pt_off = i * chunk_size;
  s.pt_len = std::min(chunk_size, plaintext_len - s.pt_off);
  s.ct_off = i * (chunk_size + kTagLen);
  s.last = (i + 1 == count);
  return s;
}

// The one AEAD call of the engine: every chunk and the one-shot aead_seal/aead_open go through it.
// `c` is already initialised with the cipher and key; this sets the 12-byte nonce, feeds the AAD
// and the data, and writes (seal) or checks (open) the 16-byte tag. If `h` is not null, the stored
// bytes (ciphertext || tag) are hashed into `digest` in the same pass, slice by slice, so each
// slice is hashed while it is still in L1/L2 cache.
bool aead_with_ctx(EVP_CIPHER_CTX* c, bool encrypt, const uint8_t nonce[kNonceLen], const uint8_t* aad,
                   size_t aad_len, const uint8_t* in, uint64_t len, uint8_t* out, uint8_t* tag,
                   EVP_MD_CTX* h, const EVP_MD* md, uint8_t* digest) {
  int n = 0;
  if (EVP_CipherInit_ex2(c, nullptr, nullptr, nonce, encrypt ? 1 : 0, nullptr) != 1) return false;
  if (h && EVP_DigestInit_ex2(h, md, nullptr) != 1) return false;
  if (aad_len > 0 && EVP_CipherUpdate(c, nullptr, &n, aad, static_cast<int>(aad_len)) != 1) return false;
  for (uint64_t off = 0; off < len; off += kSlice) {
    const int step = static_cast<int>(std::min<uint64_t>(kSlice, len - off));
    const uint8_t* stored = encrypt ? out + off : in + off;
    if (h && !encrypt && EVP_DigestUpdate(h, stored, step) != 1) return false;
    if (EVP_CipherUpdate(c, out + off, &n, in + off, step) != 1) return false;
    if (h && encrypt && EVP_DigestUpdate(h, stored, step) != 1) return false;
  }
  if (encrypt) {
    if (EVP_CipherFinal_ex(c, out + len, &n) != 1) return false;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, kTagLen, tag) != 1) return false;
  } else {
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kTagLen, tag) != 1) return false;
    if (EVP_CipherFinal_ex(c, out + len, &n) != 1) return false;
  }
  if (!h) return true;
  unsigned int dn = 0;
  return EVP_DigestUpdate(h, tag, kTagLen) == 1 && EVP_DigestFinal_ex(h, digest, &dn) == 1;
}

// Per-thread OpenSSL state: the cipher is keyed once, then only the IV changes per chunk.
class Worker {
 public:
  Worker(const ChunkParams& p, bool encrypt, const EVP_CIPHER* cipher, const EVP_MD* md)
      : p_(p), encrypt_(encrypt), md_(md), ctx_(EVP_CIPHER_CTX_new()), md_ctx_(EVP_MD_CTX_new()) {
    ok_ = ctx_ && md_ctx_ &&
          EVP_CipherInit_ex2(ctx_.get(), cipher, p.key, nullptr, encrypt ? 1 : 0, nullptr) == 1;
  }
  bool ok() const { return ok_; }

  // in: plaintext (seal) or stored ciphertext without tag (open); tag: read or written.
  // The stored bytes (ciphertext || tag) are hashed into `digest` in the same pass.
  bool crypt(uint64_t index, bool last, const uint8_t* in, uint64_t len, uint8_t* out, uint8_t* tag,
             uint8_t digest[kDigestLen]) {
    uint8_t nonce[kNonceLen];
    std::memcpy(nonce, p_.nonce_prefix, kNoncePrefixLen);
    put_be32(nonce + kNoncePrefixLen, static_cast<uint32_t>(index));
    nonce[kNonceLen - 1] = last ? 1 : 0;
    uint8_t aad[kDigestLen + 8];
    std::memcpy(aad, p_.header_digest, kDigestLen);
    put_be64(aad + kDigestLen, index);
    return aead_with_ctx(ctx_.get(), encrypt_, nonce, aad, sizeof aad, in, len, out, tag, md_ctx_.get(), md_,
                         digest);
  }

 private:
  const ChunkParams& p_;
  bool encrypt_;
  bool ok_ = false;
  const EVP_MD* md_;
  CipherCtxPtr ctx_;
  MdCtxPtr md_ctx_;
};

bool pread_full(int fd, uint8_t* buf, uint64_t len, uint64_t off) {
  while (len > 0) {
    ssize_t r = ::pread(fd, buf, len, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    buf += r;
    off += static_cast<uint64_t>(r);
    len -= static_cast<uint64_t>(r);
  }
  return true;
}

// Runs job(worker_index, chunk_index) over every chunk on `threads` threads; stops early once any
// call returns false. Returns true only if every call returned true.
template <typename MakeState, typename Job>
bool parallel_chunks(uint64_t count, unsigned threads, MakeState make_state, Job job,
                     const std::function<void(uint64_t)>& progress = {}) {
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> failed{false};
  auto run = [&](bool reporter) {
    auto state = make_state();
    if (!state) {
      failed = true;
      return;
    }
    for (uint64_t i; !failed && (i = next.fetch_add(1)) < count;) {
      if (!job(*state, i)) failed = true;
      uint64_t d = ++done;
      if (reporter && progress) progress(std::min(d, count));
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (unsigned t = 1; t < threads; ++t) {
    // Threads are an optimisation: if the system refuses more (EAGAIN under a thread or memory
    // limit), the ones already started and this one do all the chunks.
    try {
      pool.emplace_back(run, false);
    } catch (const std::system_error&) {
      break;
    }
  }
  run(true);
  for (auto& th : pool) th.join();
  return !failed;
}

bool chunk_root(const EVP_MD* md, uint64_t count, const std::vector<uint8_t>& digests,
                uint8_t root[kDigestLen]) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  uint8_t be_count[8];
  put_be64(be_count, count);
  unsigned int n = 0;
  return ctx && EVP_DigestInit_ex2(ctx.get(), md, nullptr) == 1 &&
         EVP_DigestUpdate(ctx.get(), kRootLabel, sizeof kRootLabel) == 1 &&
         EVP_DigestUpdate(ctx.get(), be_count, sizeof be_count) == 1 &&
         EVP_DigestUpdate(ctx.get(), digests.data(), digests.size()) == 1 &&
         EVP_DigestFinal_ex(ctx.get(), root, &n) == 1;
}

MdPtr fetch_sha256() { return MdPtr(EVP_MD_fetch(nullptr, "SHA256", nullptr)); }

}  // namespace

bool parse_cipher(const std::string& name, Cipher* out) {
  if (name == "aes-256-gcm") {
    *out = Cipher::Aes256Gcm;
  } else if (name == "chacha20-poly1305") {
    *out = Cipher::ChaCha20Poly1305;
  } else {
    return false;
  }
  return true;
}

uint64_t chunk_count(uint64_t plaintext_len, uint64_t chunk_size) {
  if (plaintext_len == 0) return 1;
  return plaintext_len / chunk_size + (plaintext_len % chunk_size != 0);  // no wrap near 2^64
}

uint64_t sealed_len(uint64_t plaintext_len, uint64_t chunk_size) {
  return plaintext_len + kTagLen * chunk_count(plaintext_len, chunk_size);
}

unsigned resolve_threads(unsigned requested, uint64_t chunks) {
  unsigned t = requested ? requested : std::max(1u, std::thread::hardware_concurrency());
  return static_cast<unsigned>(std::min<uint64_t>({t, kMaxThreads, chunks}));
}

namespace {

bool aead_one_shot(Cipher cipher, bool encrypt, const uint8_t key[kKeyLen], const uint8_t nonce[kNonceLen],
                   const uint8_t* aad, size_t aad_len, const uint8_t* in, uint64_t len, uint8_t* out,
                   uint8_t* tag) {
  if (len > kMaxChunkSize || aad_len > kMaxChunkSize) return false;
  CipherPtr c = fetch_cipher(cipher);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  return c && ctx && EVP_CipherInit_ex2(ctx.get(), c.get(), key, nullptr, encrypt ? 1 : 0, nullptr) == 1 &&
         aead_with_ctx(ctx.get(), encrypt, nonce, aad, aad_len, in, len, out, tag, nullptr, nullptr, nullptr);
}

}  // namespace

bool aead_seal(Cipher cipher, const uint8_t key[kKeyLen], const uint8_t nonce[kNonceLen], const uint8_t* aad,
               size_t aad_len, const uint8_t* plaintext, uint64_t len, uint8_t* out) {
  bool ok = aead_one_shot(cipher, true, key, nonce, aad, aad_len, plaintext, len, out, out + len);
  if (!ok) OPENSSL_cleanse(out, len + kTagLen);
  return ok;
}

bool aead_open(Cipher cipher, const uint8_t key[kKeyLen], const uint8_t nonce[kNonceLen], const uint8_t* aad,
               size_t aad_len, const uint8_t* sealed, uint64_t len, uint8_t* out) {
  uint8_t tag[kTagLen];
  std::memcpy(tag, sealed + len, kTagLen);
  bool ok = aead_one_shot(cipher, false, key, nonce, aad, aad_len, sealed, len, out, tag);
  if (!ok) OPENSSL_cleanse(out, len);
  return ok;
}

bool seal_chunks(const ChunkParams& p, const uint8_t* plaintext, uint8_t* dst, uint8_t root[kDigestLen]) {
  const uint64_t count = chunk_count(p.plaintext_len, p.chunk_size);
  CipherPtr cipher = fetch_cipher(p.cipher);
  MdPtr md = fetch_sha256();
  if (!cipher || !md) return false;
  std::vector<uint8_t> digests(count * kDigestLen);
  bool ok = parallel_chunks(
      count, resolve_threads(p.threads, count),
      [&] { return std::make_unique<Worker>(p, true, cipher.get(), md.get()); },
      [&](Worker& w, uint64_t i) {
        if (!w.ok()) return false;
        Span s = chunk_span(i, p.chunk_size, p.plaintext_len, count);
        uint8_t* out = dst + s.ct_off;
        return w.crypt(i, s.last, plaintext + s.pt_off, s.pt_len, out, out + s.pt_len,
                       &digests[i * kDigestLen]);
      },
      p.progress);
  ok = ok && chunk_root(md.get(), count, digests, root);
  if (!ok) OPENSSL_cleanse(dst, sealed_len(p.plaintext_len, p.chunk_size));
  return ok;
}

bool open_chunks(const ChunkParams& p, const ChunkSource& src, uint8_t* dst,
                 const uint8_t expected_root[kDigestLen]) {
  const uint64_t count = chunk_count(p.plaintext_len, p.chunk_size);
  CipherPtr cipher = fetch_cipher(p.cipher);
  MdPtr md = fetch_sha256();
  std::vector<uint8_t> digests(count * kDigestLen);
  struct State {
    Worker w;
    std::vector<uint8_t> buf;  // one stored chunk, when reading from a file
  };
  const bool from_fd = src.fd >= 0;
  bool ok = cipher && md &&
            parallel_chunks(
                count, resolve_threads(p.threads, count),
                [&] {
                  auto s = std::make_unique<State>(State{Worker(p, false, cipher.get(), md.get()), {}});
                  if (from_fd) s->buf.resize(std::min(p.chunk_size, p.plaintext_len) + kTagLen);
                  return s;
                },
                [&](State& st, uint64_t i) {
                  if (!st.w.ok()) return false;
                  Span s = chunk_span(i, p.chunk_size, p.plaintext_len, count);
                  const uint64_t stored = s.pt_len + kTagLen;
                  const uint8_t* chunk = src.data + s.ct_off;
                  if (from_fd) {
                    if (!pread_full(src.fd, st.buf.data(), stored, src.offset + s.ct_off)) return false;
                    chunk = st.buf.data();
                  }
                  uint8_t tag[kTagLen];
                  std::memcpy(tag, chunk + s.pt_len, kTagLen);
                  return st.w.crypt(i, s.last, chunk, s.pt_len, dst + s.pt_off, tag,
                                    &digests[i * kDigestLen]);
                },
                p.progress);
  uint8_t root[kDigestLen];
  ok = ok && chunk_root(md.get(), count, digests, root) &&
       CRYPTO_memcmp(root, expected_root, kDigestLen) == 0;
  if (!ok) OPENSSL_cleanse(dst, p.plaintext_len);
  return ok;
}

bool digest_chunks(uint64_t chunk_size, uint64_t plaintext_len, const ChunkSource& src, unsigned threads,
                   uint8_t root[kDigestLen]) {
  const uint64_t count = chunk_count(plaintext_len, chunk_size);
  MdPtr md = fetch_sha256();
  if (!md) return false;
  std::vector<uint8_t> digests(count * kDigestLen);
  struct State {
    MdCtxPtr ctx;
    std::vector<uint8_t> buf;
  };
  const bool from_fd = src.fd >= 0;
  bool ok = parallel_chunks(
      count, resolve_threads(threads, count),
      [&] {
        auto s = std::make_unique<State>(State{MdCtxPtr(EVP_MD_CTX_new()), {}});
        if (from_fd) s->buf.resize(std::min(chunk_size, plaintext_len) + kTagLen);
        return s->ctx ? std::move(s) : nullptr;
      },
      [&](State& st, uint64_t i) {
        Span s = chunk_span(i, chunk_size, plaintext_len, count);
        const uint64_t stored = s.pt_len + kTagLen;
        const uint8_t* chunk = src.data + s.ct_off;
        if (from_fd) {
          if (!pread_full(src.fd, st.buf.data(), stored, src.offset + s.ct_off)) return false;
          chunk = st.buf.data();
        }
        unsigned int n = 0;
        return EVP_DigestInit_ex2(st.ctx.get(), md.get(), nullptr) == 1 &&
               EVP_DigestUpdate(st.ctx.get(), chunk, stored) == 1 &&
               EVP_DigestFinal_ex(st.ctx.get(), &digests[i * kDigestLen], &n) == 1;
      });
  return ok && chunk_root(md.get(), count, digests, root);
}

}  // namespace edgeguard
