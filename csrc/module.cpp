// edgeguard._core: private native core. Bytes in, bytes out; policy lives in Python.
#include <openssl/crypto.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>

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

// At most 2^32 chunks of at most 64 MiB: sealed_len(plaintext_len, chunk_size) cannot wrap after this.
void check_chunk_size(uint64_t chunk_size, uint64_t plaintext_len) {
  if (chunk_size == 0 || chunk_size > kMaxChunkSize) throw py::value_error("chunk_size out of range");
  if (chunk_count(plaintext_len, chunk_size) > kMaxChunkCount) throw py::value_error("too many chunks");
}

// A view of a buffer-protocol object as one C-contiguous run of bytes. It holds the export (and so
// the object) until destruction, so native code may use it with the GIL released; it must be
// destroyed with the GIL held. Anything else (a strided or reversed view, a read-only object where
// bytes are written) would let the engine read or write outside the caller's memory: TypeError.
class ByteView {
 public:
  ByteView(const py::handle& obj, bool writable, const char* what) {
    if (!PyObject_CheckBuffer(obj.ptr())) throw py::type_error(std::string(what) + " must be a buffer");
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0) {
      py::raise_from(PyExc_TypeError, (std::string(what) + (writable ? " must be a writable" : " must be a") +
                                       " C-contiguous buffer").c_str());
      throw py::error_already_set();
    }
  }
  ~ByteView() { PyBuffer_Release(&view_); }
  ByteView(const ByteView&) = delete;
  ByteView& operator=(const ByteView&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(view_.buf); }
  uint64_t size() const { return static_cast<uint64_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// The destination of a native write must have exactly the length the engine writes.
void check_exact(const ByteView& v, uint64_t len, const char* what) {
  if (v.size() != len) throw py::value_error(std::string(what) + " must be exactly " + std::to_string(len) + " bytes");
}

unsigned checked_threads(unsigned threads) {
  if (threads > kMaxThreads)
    throw py::value_error("threads must be at most " + std::to_string(kMaxThreads) + " (0: all cores)");
  return threads;
}

// A source of stored chunks: any buffer, or an integer file descriptor plus offset.
struct Source {
  ChunkSource src;
  std::unique_ptr<ByteView> keep;  // holds the buffer view while the GIL is released
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

// The range [offset, offset + stored_len) is checked without computing the sum, which could wrap.
Source make_source(const py::object& obj, uint64_t offset, uint64_t stored_len) {
  Source s;
  if (py::isinstance<py::int_>(obj)) {
    int overflow = 0;
    const long long fd = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    if (overflow != 0 || fd < 0 || fd > INT_MAX) throw py::value_error("file descriptor out of range");
    // pread takes a signed off_t: the whole range must fit in it.
    constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
    if (offset > kMaxOffset || stored_len > kMaxOffset - offset) throw py::value_error("offset out of range");
    s.src.fd = static_cast<int>(fd);
    s.src.offset = offset;
    return s;
  }
  s.keep = std::make_unique<ByteView>(obj, false, "source");
  if (offset > s.keep->size() || stored_len > s.keep->size() - offset)
    throw py::value_error("source is too short");
  s.src.data = s.keep->data() + offset;
  return s;
}

// pybind11's "incompatible function arguments" TypeError repeats every argument of the call, so a
// wrong type anywhere would put the key into the message (and any log of it). Functions that take
// key material are registered through this wrapper: it keeps the supported signatures and drops
// the arguments. Callers still check arguments first for a clearer message.
template <typename F, typename... Extra>
void def_redacted(py::module_& m, const char* name, F&& f, const Extra&... extra) {
  const py::object impl = py::cpp_function(std::forward<F>(f), py::name(name), extra...);
  const std::string doc = py::str(impl.attr("__doc__"));
  m.def(
      name,
      [impl](const py::args& args, const py::kwargs& kwargs) -> py::object {
        try {
          return impl(*args, **kwargs);
        } catch (py::error_already_set& e) {
          if (!e.matches(PyExc_TypeError)) throw;
          const std::string msg = py::str(e.value());
          const size_t cut = msg.find("Invoked with");
          if (cut == std::string::npos) throw;
          throw py::type_error(msg.substr(0, msg.find_last_not_of('\n', cut - 1) + 1));
        }
      },
      py::doc(doc.c_str()));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "edgeguard private native core (do not import directly)";
  m.attr("TAG_LEN") = kTagLen;
  m.attr("NONCE_PREFIX_LEN") = kNoncePrefixLen;
  m.attr("MAX_CHUNK_SIZE") = kMaxChunkSize;
  m.attr("MAX_THREADS") = kMaxThreads;
  init_detector(m);
  init_secure_buffer(m);

  m.def("openssl_version", [] { return std::string(OpenSSL_version(OPENSSL_VERSION)); });
  m.def("hardware_threads", [] { return std::max(1u, std::thread::hardware_concurrency()); });
  m.def("sealed_len", [](uint64_t plaintext_len, uint64_t chunk_size) {
    check_chunk_size(chunk_size, plaintext_len);
    return sealed_len(plaintext_len, chunk_size);
  }, py::arg("plaintext_len"), py::arg("chunk_size"));

  def_redacted(
      m, "seal_chunks",
      [](const std::string& cipher, const py::bytes& key, const py::bytes& nonce_prefix,
         const py::bytes& header_digest, uint64_t chunk_size, const py::object& plaintext,
         const py::object& out, unsigned threads, const py::object& progress) {
        ByteView in(plaintext, false, "plaintext");
        check_chunk_size(chunk_size, in.size());
        ByteView dst(out, true, "out");
        check_exact(dst, sealed_len(in.size(), chunk_size), "out");
        ChunkParams p{cipher_from(cipher), exact_bytes(key, kKeyLen, "key"),
                      exact_bytes(nonce_prefix, kNoncePrefixLen, "nonce_prefix"),
                      exact_bytes(header_digest, kDigestLen, "header_digest"), chunk_size, in.size(),
                      checked_threads(threads), progress_hook(progress, chunk_count(in.size(), chunk_size))};
        uint8_t root[kDigestLen];
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = seal_chunks(p, in.data(), dst.data(), root);
        }
        if (!ok) throw std::runtime_error("OpenSSL failed while sealing");
        return py::bytes(reinterpret_cast<char*>(root), kDigestLen);
      },
      py::arg("cipher"), py::arg("key"), py::arg("nonce_prefix"), py::arg("header_digest"),
      py::arg("chunk_size"), py::arg("plaintext"), py::arg("out"), py::arg("threads") = 0,
      py::arg("progress") = py::none());

  def_redacted(
      m, "open_chunks",
      [](const std::string& cipher, const py::bytes& key, const py::bytes& nonce_prefix,
         const py::bytes& header_digest, uint64_t chunk_size, uint64_t plaintext_len,
         const py::object& source, uint64_t offset, const py::object& out, const py::bytes& expected_root,
         unsigned threads, const py::object& progress) {
        check_chunk_size(chunk_size, plaintext_len);
        Source src = make_source(source, offset, sealed_len(plaintext_len, chunk_size));
        ByteView dst(out, true, "out");
        check_exact(dst, plaintext_len, "out");
        ChunkParams p{cipher_from(cipher), exact_bytes(key, kKeyLen, "key"),
                      exact_bytes(nonce_prefix, kNoncePrefixLen, "nonce_prefix"),
                      exact_bytes(header_digest, kDigestLen, "header_digest"), chunk_size, plaintext_len,
                      checked_threads(threads), progress_hook(progress, chunk_count(plaintext_len, chunk_size))};
        const uint8_t* root = exact_bytes(expected_root, kDigestLen, "expected_root");
        py::gil_scoped_release nogil;
        return open_chunks(p, src.src, dst.data(), root);
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
        checked_threads(threads);
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
  def_redacted(
      m, "aead_seal",
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

  def_redacted(
      m, "aead_open",
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
