# Cross build for Linux aarch64 (DGX Spark's CPU side) with Debian's cross toolchain
# (g++-aarch64-linux-gnu) and multiarch arm64 packages (dpkg --add-architecture arm64;
# libpcre2-dev:arm64 ...). scripts/cross-aarch64.sh installs both and uses this file:
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# Test binaries run under qemu-user (package qemu-user): ctest and gtest_discover_tests go
# through CMAKE_CROSSCOMPILING_EMULATOR.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(NEMOTRON_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${NEMOTRON_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${NEMOTRON_CROSS_TRIPLE}-g++)

# Headers and libraries: the cross toolchain's own (/usr/aarch64-linux-gnu) and the multiarch
# packages' (/usr/include, /usr/lib/aarch64-linux-gnu, which the Debian cross compiler searches
# by itself). Programs (pkg-config, python) come from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${NEMOTRON_CROSS_TRIPLE})
set(CMAKE_LIBRARY_ARCHITECTURE ${NEMOTRON_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config: only the arm64 .pc files and the arch-independent ones, never x86_64's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${NEMOTRON_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# qemu-user runs the test binaries. Its root is the host's (-L /): the dynamic loader, libc and
# libstdc++ of the arm64 multiarch packages (libc6:arm64 comes with the -dev packages above),
# which the arm64 libraries were built against. Not -L /usr/aarch64-linux-gnu: that prefix gives
# the cross toolchain's loader but only a fallback for the libraries, and the loader then finds
# libc6:arm64's libc.so.6 in /lib/aarch64-linux-gnu first. A loader and a libc of different
# builds (2.36-8cross1, 2.36-9+deb12u*) share private structures: the first test that started a
# thread spun in libc for minutes (a tiny forward pass that takes 0.5 s with a matching pair).
find_program(NEMOTRON_QEMU_AARCH64 qemu-aarch64)
if(NEMOTRON_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${NEMOTRON_QEMU_AARCH64} -L /)
else()
  # No emulator: the build still works, the tests are listed when ctest runs (on an aarch64 host
  # with binfmt_misc, say) instead of right after linking.
  set(CMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE PRE_TEST)
endif()

# CPU code only: an x86_64 nvcc does not build for aarch64 hosts without NVIDIA's cross
# packages. The CUDA code is the same on both hosts; a native build checks it for 121a.
set(NEMOTRON_CUDA OFF CACHE BOOL "Build the CUDA backend")
