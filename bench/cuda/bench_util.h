#pragma once
// Shared by the CUDA benches: error checks and graph-replay timing.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "kernels/device_info.h"

#define CHECK(expr)                                                                           \
  do {                                                                                        \
    const cudaError_t e_ = (expr);                                                            \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace nemotron::bench {

// Prints the device line every CUDA bench starts with and returns the copy bandwidth (GB/s,
// read + write) measured now; exits when there is no device.
inline double print_device_header() {
  kernels::DeviceInfo info;
  std::string err;
  if (!kernels::cuda_device_info(0, &info, &err)) {
    std::fprintf(stderr, "no device: %s\n", err.c_str());
    std::exit(1);
  }
  double copy = 0;
  if (!kernels::cuda_measure_copy_bandwidth(0, std::size_t{1} << 30, 20, &copy, &err)) {
    std::fprintf(stderr, "copy bandwidth: %s\n", err.c_str());
    std::exit(1);
  }
  std::printf("device: %s (sm_%d%d, %d SMs), copy bandwidth %.0f GB/s (read+write)\n\n", info.name.c_str(),
              info.sm_major, info.sm_minor, info.multiprocessors, copy);
  return copy;
}

// Captures `launches` calls of launch(i) into a CUDA graph on `st`, replays it once to warm
// up, then 9 times timed with events; returns the median time of one launch, in ms.
inline double median_launch_ms(cudaStream_t st, int launches, const std::function<void(int)>& launch) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < launches; ++i) launch(i);
  CHECK(cudaStreamEndCapture(st, &g));
  CHECK(cudaGraphInstantiate(&ge, g, 0));
  CHECK(cudaGraphLaunch(ge, st));
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int r = 0; r < 9; ++r) {
    CHECK(cudaEventRecord(e0, st));
    CHECK(cudaGraphLaunch(ge, st));
    CHECK(cudaEventRecord(e1, st));
    CHECK(cudaEventSynchronize(e1));
    float m = 0;
    CHECK(cudaEventElapsedTime(&m, e0, e1));
    ms.push_back(m / static_cast<float>(launches));
  }
  std::sort(ms.begin(), ms.end());
  CHECK(cudaGraphExecDestroy(ge));
  CHECK(cudaGraphDestroy(g));
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  return ms[ms.size() / 2];
}

}  // namespace nemotron::bench
