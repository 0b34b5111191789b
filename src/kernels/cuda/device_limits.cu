// device_limits(): cached per device (each value read once; racing first calls store the same).
#include <atomic>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device_limits.cuh"

namespace nemotron::kernels::cuda {

DeviceLimits device_limits() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> sms_cache[kMaxDevices], optin_cache[kMaxDevices], major_cache[kMaxDevices];
  int dev = 0;
  require(cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < kMaxDevices, "device_limits: no current device");
  DeviceLimits d{sms_cache[dev].load(std::memory_order_relaxed), optin_cache[dev].load(std::memory_order_relaxed),
                 major_cache[dev].load(std::memory_order_relaxed)};
  if (d.sms == 0 || d.smem_optin == 0 || d.cc_major == 0) {  // racing initializations store the same values
    require(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
                cudaDeviceGetAttribute(&d.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
                cudaDeviceGetAttribute(&d.cc_major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess,
            "device_limits: device attributes unavailable");
    major_cache[dev].store(d.cc_major, std::memory_order_relaxed);
    optin_cache[dev].store(d.smem_optin, std::memory_order_relaxed);
    sms_cache[dev].store(d.sms, std::memory_order_relaxed);
  }
  return d;
}

}  // namespace nemotron::kernels::cuda
