// Chunked AEAD engine: the bulk of sealing and opening, with no knowledge of the file header.
//
// A payload of L bytes is cut into max(1, ceil(L / chunk_size)) chunks. Chunk i is sealed with
//   nonce = prefix(7) || be32(i) || last(1)   and   aad = header_digest(32) || be64(i)
// and stored as ciphertext || tag(16). Every stored chunk is hashed with SHA-256 in the same pass;
// the chunk root is SHA-256("edgeguard/v1 chunks\0" || be64(count) || d_0 || ... || d_{n-1}).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace edgeguard {

enum class Cipher { Aes256Gcm, ChaCha20Poly1305 };

constexpr size_t kKeyLen = 32;
constexpr size_t kNoncePrefixLen = 7;
constexpr size_t kNonceLen = 12;
constexpr size_t kTagLen = 16;
constexpr size_t kDigestLen = 32;
constexpr uint64_t kMaxChunkSize = 64ull << 20;  // EVP update lengths are int; keep far below.
constexpr uint64_t kMaxChunkCount = 1ull << 32;  // the nonce counter is 32 bits
// Worker threads per call. More buys nothing on any real machine and only risks failing to start
// them; a request above it (or a hardware count above it, for 0) is clamped.
constexpr unsigned kMaxThreads = 1024;

bool parse_cipher(const std::string& name, Cipher* out);

struct ChunkParams {
  Cipher cipher;
  const uint8_t* key;            // kKeyLen bytes
  const uint8_t* nonce_prefix;   // kNoncePrefixLen bytes
  const uint8_t* header_digest;  // kDigestLen bytes
  uint64_t chunk_size;           // 1 .. kMaxChunkSize
  uint64_t plaintext_len;
  unsigned threads;              // 0 = every hardware thread; at most kMaxThreads are used
  // Called now and then from the calling thread with the number of chunks done; may be empty.
  std::function<void(uint64_t)> progress;
};

// Where stored chunks are read from: a memory range, or a file descriptor read with pread
// (a file that shrinks underneath us gives a failed read, never SIGBUS as an mmap would).
struct ChunkSource {
  const uint8_t* data = nullptr;  // used when fd < 0
  int fd = -1;
  uint64_t offset = 0;            // where chunk 0 starts in the file
};

uint64_t chunk_count(uint64_t plaintext_len, uint64_t chunk_size);
uint64_t sealed_len(uint64_t plaintext_len, uint64_t chunk_size);
unsigned resolve_threads(unsigned requested, uint64_t chunks);

// One AEAD operation with an arbitrary 12-byte nonce and AAD and a 16-byte tag, through the very
// same call every chunk uses. It exists so known-answer vectors (Wycheproof) can exercise the
// engine's AEAD; the file format never calls it. len and aad_len are at most kMaxChunkSize.
// aead_seal writes len + kTagLen bytes (ciphertext || tag) to out; false (out wiped) if OpenSSL fails.
bool aead_seal(Cipher cipher, const uint8_t key[kKeyLen], const uint8_t nonce[kNonceLen], const uint8_t* aad,
               size_t aad_len, const uint8_t* plaintext, uint64_t len, uint8_t* out);
// aead_open reads len + kTagLen bytes (ciphertext || tag) and writes len bytes of plaintext to out;
// false (out wiped) unless the tag verifies.
bool aead_open(Cipher cipher, const uint8_t key[kKeyLen], const uint8_t nonce[kNonceLen], const uint8_t* aad,
               size_t aad_len, const uint8_t* sealed, uint64_t len, uint8_t* out);

// Encrypts plaintext (plaintext_len bytes) into dst (sealed_len bytes) and writes the chunk root.
// Returns false only if OpenSSL fails; dst is then wiped.
bool seal_chunks(const ChunkParams& p, const uint8_t* plaintext, uint8_t* dst,
                 uint8_t root[kDigestLen]);

// All or nothing: decrypts every chunk into dst (plaintext_len bytes) and returns true only if
// every tag verifies, every read succeeds and the chunk root equals expected_root (compared in
// constant time). On any failure dst is wiped before returning false, so no plaintext escapes.
bool open_chunks(const ChunkParams& p, const ChunkSource& src, uint8_t* dst,
                 const uint8_t expected_root[kDigestLen]);

// Hashes the stored chunks without any key (publisher-side verification). False on a failed read.
bool digest_chunks(uint64_t chunk_size, uint64_t plaintext_len, const ChunkSource& src,
                   unsigned threads, uint8_t root[kDigestLen]);

}  // namespace edgeguard
