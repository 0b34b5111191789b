#pragma once
// A linear_cuda split-K workspace (LinearCudaArgs::workspace) for this device, zeroed as the
// contract asks; after every call its counters must be zero again (counters_zero).
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/linear_cuda.h"

namespace nemotron::testing {

inline int device_sms() {
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms;
}

struct SplitWorkspace {
  int sms = device_sms();
  DeviceBuffer<uint8_t> buf{static_cast<std::size_t>(kernels::linear_split_workspace_bytes(sms))};
  SplitWorkspace() { cudaMemset(buf.get(), 0, buf.size()); }
  void attach(kernels::LinearCudaArgs& a) const {
    a.workspace = buf.get();
    a.workspace_bytes = static_cast<int64_t>(buf.size());
  }
  bool counters_zero() const {
    std::vector<uint8_t> h(static_cast<std::size_t>(kernels::linear_split_counter_bytes(sms)));
    cudaMemcpy(h.data(), buf.get(), h.size(), cudaMemcpyDeviceToHost);
    for (uint8_t b : h)
      if (b) return false;
    return true;
  }
};

}  // namespace nemotron::testing
