# Cross toolchain for aarch64 Debian bookworm with the sysroot of tools/aarch64/make-sysroot.sh.
# The sysroot comes from the EDGEGUARD_AARCH64_SYSROOT environment variable (set by the scripts)
# so scikit-build-core and plain cmake runs share this file.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

if(NOT DEFINED ENV{EDGEGUARD_AARCH64_SYSROOT})
  message(FATAL_ERROR "set EDGEGUARD_AARCH64_SYSROOT (see tools/aarch64/make-sysroot.sh)")
endif()
set(CMAKE_SYSROOT $ENV{EDGEGUARD_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH ${CMAKE_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# pybind11's CMake config lives in the host's site-packages, outside the sysroot.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# Else pkg-config (used by FindOpenSSL) reports the host's x86_64 libcrypto.
set(ENV{PKG_CONFIG_LIBDIR} "${CMAKE_SYSROOT}/usr/lib/aarch64-linux-gnu/pkgconfig:${CMAKE_SYSROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${CMAKE_SYSROOT})
# ctest runs the test binaries through qemu-user.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;${CMAKE_SYSROOT})
