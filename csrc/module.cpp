// edgeguard._core: private native core. Bytes in, bytes out; policy lives in Python.
#include <openssl/crypto.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <thread>
#include <variant>

#include "chunked_aead.h"

namespace py = pybind11;
using namespace edgeguard;

void init_detector(py::module_& m);  // detector_bindings.cpp
void init_secure_buffer(py::module_& m);

namespace {

const uint8_t* exact_bytes(const py::bytes& b, size_t len, const char* what) {
  std::string_view v(b);
  if (v.size() != len) throw py::value_error(std::string(what) + " has the wrong length");
  return reinterpret_cast<const uint8_t*>(v.data());
}

Cipher cipher_from(const std::string& name) {
  Cipher c;
  if (!parse_cipher(name, &c)) throw py::value_error("unknown cipher: " + name);
  return c;
}

void check_chunk_size(uint64_t chunk_size, uint64_t plaintext_len) {
  if (chunk_size == 0 || chunk_size > kMaxChunkSize) throw py::value_error("chunk_size out of range");
  if (chunk_count(plaintext_len, chunk_size) > kMaxChunkCount) throw py::value_error("too many chunks");
}

py::buffer_info readable(const py::buffer& b, uint64_t min_len, const char* what) {
  py::buffer_info info = b.request();
  if (static_cast<uint64_t>(info.size * info.itemsize) < min_len)
    throw py::value_error(std::string(what) + " is too short");
  return info;
}

py::buffer_info writable(const py::buffer& b, uint64_t len, const char* what) {
  py::buffer_info info = b.request(true);
  if (static_cast<uint64_t>(info.size * info.itemsize) != len)
    throw py::value_error(std::string(what) + " must be exactly " + std::to_string(len) + " bytes");
  return info;
}

// A source of stored chunks: any buffer, or an integer file descriptor plus offset.
struct Source {
  ChunkSource src;
  py::buffer_info keep;  // holds the buffer view while the GIL is released
};

// Wraps an optional Python callable(done, total) so the engine can call it without the GIL held.
std::function<void(uint64_t)> progress_hook(const py::object& cb, uint64_t total) {
  if (cb.is_none()) return {};
  return [cb, total](uint64_t done) {
    py::gil_scoped_acquire gil;
    try {
      cb(done, total);
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("edgeguard progress callback");
    }
  };
}

Source make_source(const py::object& obj, uint64_t offset, uint64_t stored_len) {
  Source s;
  if (py::isinstance<py::int_>(obj)) {
    s.src.fd = obj.cast<int>();
    if (s.src.fd < 0) throw py::value_error("negative file descriptor");
    s.src.offset = offset;
    return s;
  }
  s.keep = readable(obj.cast<py::buffer>(), offset + stored_len, "source");
  s.src.data = static_cast<const uint8_t*>(s.keep.ptr) + offset;
  return s;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgeguard private native core (do not import directly)";
  m.attr("TAG_LEN") = kTagLen;
  m.attr("NONCE_PREFIX_LEN") = kNoncePrefixLen;
  m.attr("MAX_CHUNK_SIZE") = kMaxChunkSize;
  init_detector(m);
  init_secure_buffer(m);

  m.def("openssl_version", [] { return std::string(OpenSSL_version(OPENSSL_VERSION)); });
  m.def("hardware_threads", [] { return std::max(1u, std::thread::hardware_concurrency()); });
  m.def("sealed_len", [](uint64_t plaintext_len, uint64_t chunk_size) {
    check_chunk_size(chunk_size, plaintext_len);
    return sealed_len(plaintext_len, chunk_size);
  }, py::arg("plaintext_len"), py::arg("chunk_size"));

  m.def(
      "seal_chunks",
      [](const std::string& cipher, const py::bytes& key, const py::bytes& nonce_prefix,
         const py::bytes& header_digest, uint64_t chunk_size, const py::buffer& plaintext,
         const py::buffer& out, unsigned threads, const py::object& progress) {
        py::buffer_info in = plaintext.request();
        const uint64_t len = static_cast<uint64_t>(in.size * in.itemsize);
        check_chunk_size(chunk_size, len);
        py::buffer_info dst = writable(out, sealed_len(len, chunk_size), "out");
        ChunkParams p{cipher_from(cipher), exact_bytes(key, kKeyLen, "key"),
                      exact_bytes(nonce_prefix, kNoncePrefixLen, "nonce_prefix"),
                      exact_bytes(header_digest, kDigestLen, "header_digest"), chunk_size, len, threads,
                      progress_hook(progress, chunk_count(len, chunk_size))};
        uint8_t root[kDigestLen];
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = seal_chunks(p, static_cast<const uint8_t*>(in.ptr), static_cast<uint8_t*>(dst.ptr), root);
        }
        if (!ok) throw std::runtime_error("OpenSSL failed while sealing");
        return py::bytes(reinterpret_cast<char*>(root), kDigestLen);
      },
      py::arg("cipher"), py::arg("key"), py::arg("nonce_prefix"), py::arg("header_digest"),
      py::arg("chunk_size"), py::arg("plaintext"), py::arg("out"), py::arg("threads") = 0,
      py::arg("progress") = py::none());

  m.def(
      "open_chunks",
      [](const std::string& cipher, const py::bytes& key, const py::bytes& nonce_prefix,
         const py::bytes& header_digest, uint64_t chunk_size, uint64_t plaintext_len,
         const py::object& source, uint64_t offset, const py::buffer& out, const py::bytes& expected_root,
         unsigned threads, const py::object& progress) {
        check_chunk_size(chunk_size, plaintext_len);
        Source src = make_source(source, offset, sealed_len(plaintext_len, chunk_size));
        py::buffer_info dst = writable(out, plaintext_len, "out");
        ChunkParams p{cipher_from(cipher), exact_bytes(key, kKeyLen, "key"),
                      exact_bytes(nonce_prefix, kNoncePrefixLen, "nonce_prefix"),
                      exact_bytes(header_digest, kDigestLen, "header_digest"), chunk_size, plaintext_len,
                      threads, progress_hook(progress, chunk_count(plaintext_len, chunk_size))};
        const uint8_t* root = exact_bytes(expected_root, kDigestLen, "expected_root");
        py::gil_scoped_release nogil;
        return open_chunks(p, src.src, static_cast<uint8_t*>(dst.ptr), root);
      },
      py::arg("cipher"), py::arg("key"), py::arg("nonce_prefix"), py::arg("header_digest"),
      py::arg("chunk_size"), py::arg("plaintext_len"), py::arg("source"), py::arg("offset"),
      py::arg("out"), py::arg("expected_root"), py::arg("threads") = 0, py::arg("progress") = py::none());

  m.def(
      "digest_chunks",
      [](uint64_t chunk_size, uint64_t plaintext_len, const py::object& source, uint64_t offset,
         unsigned threads) -> py::object {
        check_chunk_size(chunk_size, plaintext_len);
        Source src = make_source(source, offset, sealed_len(plaintext_len, chunk_size));
        uint8_t root[kDigestLen];
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = digest_chunks(chunk_size, plaintext_len, src.src, threads, root);
        }
        if (!ok) return py::none();
        return py::bytes(reinterpret_cast<char*>(root), kDigestLen);
      },
      py::arg("chunk_size"), py::arg("plaintext_len"), py::arg("source"), py::arg("offset"),
      py::arg("threads") = 0);
  // One-shot AEAD over the engine's per-chunk call, for known-answer vectors only (Wycheproof).
  // Not part of the file format and not API: the payload path uses seal_chunks/open_chunks.
  m.def(
      "aead_seal",
      [](const std::string& cipher, const py::bytes& key, const py::bytes& nonce, const py::bytes& aad,
         const py::bytes& plaintext) {
        std::string_view a(aad), pt(plaintext);
        if (pt.size() > kMaxChunkSize || a.size() > kMaxChunkSize) throw py::value_error("input too long");
        std::string out(pt.size() + kTagLen, '\0');
        if (!aead_seal(cipher_from(cipher), exact_bytes(key, kKeyLen, "key"), exact_bytes(nonce, kNonceLen, "nonce"),
                       reinterpret_cast<const uint8_t*>(a.data()), a.size(),
                       reinterpret_cast<const uint8_t*>(pt.data()), pt.size(),
                       reinterpret_cast<uint8_t*>(out.data())))
          throw std::runtime_error("OpenSSL failed while sealing");
        return py::bytes(out);
      },
      py::arg("cipher"), py::arg("key"), py::arg("nonce"), py::arg("aad"), py::arg("plaintext"));

  m.def(
      "aead_open",
      [](const std::string& cipher, const py::bytes& key, const py::bytes& nonce, const py::bytes& aad,
         const py::bytes& sealed) -> py::object {
        std::string_view a(aad), ct(sealed);
        if (ct.size() < kTagLen) throw py::value_error("sealed is shorter than a tag");
        if (ct.size() - kTagLen > kMaxChunkSize || a.size() > kMaxChunkSize) throw py::value_error("input too long");
        const uint64_t len = ct.size() - kTagLen;
        std::string out(len, '\0');
        if (!aead_open(cipher_from(cipher), exact_bytes(key, kKeyLen, "key"), exact_bytes(nonce, kNonceLen, "nonce"),
                       reinterpret_cast<const uint8_t*>(a.data()), a.size(),
                       reinterpret_cast<const uint8_t*>(ct.data()), len, reinterpret_cast<uint8_t*>(out.data())))
          return py::none();
        return py::bytes(out);
      },
      py::arg("cipher"), py::arg("key"), py::arg("nonce"), py::arg("aad"), py::arg("sealed"));
}
