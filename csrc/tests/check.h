// The native tests' harness: CHECK/REQUIRE and a table of named cases. No test framework: the
// project cannot download one, and a tiny CHECK macro is enough.
//
// Usage of every test binary: BINARY            run every case
//                             BINARY CASE...    run the named cases (ctest registers one test per case)
//                             BINARY --list     print the case names
// CMakeLists.txt reads each file's case table (lines `    {"name", test_...},`) to register the cases.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <vector>

namespace edgeguard_test {

inline int g_failures = 0;

struct Case {
  const char* name;
  void (*fn)();
};

template <size_t N>
int run_cases(const Case (&cases)[N], int argc, char** argv) {
  std::vector<const Case*> selected;
  if (argc == 2 && std::strcmp(argv[1], "--list") == 0) {
    for (const Case& c : cases) std::printf("%s\n", c.name);
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    const Case* found = nullptr;
    for (const Case& c : cases)
      if (std::strcmp(c.name, argv[i]) == 0) found = &c;
    if (!found) {
      std::fprintf(stderr, "unknown case: %s\n", argv[i]);
      return 2;
    }
    selected.push_back(found);
  }
  if (selected.empty())
    for (const Case& c : cases) selected.push_back(&c);

  int passed = 0, failed = 0;
  for (const Case* c : selected) {
    const int before = g_failures;
    c->fn();
    const bool ok = g_failures == before;
    std::printf("%-36s %s\n", c->name, ok ? "ok" : "FAILED");
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace edgeguard_test

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
      ++::edgeguard_test::g_failures;                                                 \
    }                                                                                 \
  } while (0)

// Like CHECK, but stops the current case: later checks would only repeat the same failure.
#define REQUIRE(cond)                                                                 \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
      ++::edgeguard_test::g_failures;                                                 \
      return;                                                                         \
    }                                                                                 \
  } while (0)
