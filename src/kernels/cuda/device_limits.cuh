#pragma once
// The current device's limits that size kernel launches, read once per device.
#include <cuda_runtime.h>

namespace nemotron::kernels::cuda {

// Multiprocessor count, per-block shared-memory opt-in limit (bytes), compute capability major.
struct DeviceLimits {
  int sms = 0;
  int smem_optin = 0;
  int cc_major = 0;  // compute capability major (9: Hopper, 12: GB10)
};
DeviceLimits device_limits();

}  // namespace nemotron::kernels::cuda
