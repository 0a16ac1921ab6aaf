// The one place where LibTorch 1.13 (Debian) and 2.x (pip wheels, CUDA) differ for this project:
// autocast switches. Include only from translation units that use LibTorch; it lives in cifar_model, on which
// every library that needs it (model, eval, dist, train) builds.
#pragma once
#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CIFAR100_TORCH_AUTOCAST_BY_DEVICE 1
#else
#define CIFAR100_TORCH_AUTOCAST_BY_DEVICE 0
#endif

namespace cifar::compat {

inline bool autocast_enabled(c10::DeviceType dev) {
#if CIFAR100_TORCH_AUTOCAST_BY_DEVICE
  return at::autocast::is_autocast_enabled(dev);
#else
  return dev == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

inline void set_autocast(c10::DeviceType dev, bool enabled, c10::ScalarType dtype) {
#if CIFAR100_TORCH_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_dtype(dev, dtype);
  at::autocast::set_autocast_enabled(dev, enabled);
#else
  if (dev == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

// Autocast for one region (a forward pass), restoring the previous state and clearing the cast cache.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType dev, bool enabled, c10::ScalarType dtype = c10::ScalarType::BFloat16)
      : dev_(dev), was_(autocast_enabled(dev)), active_(enabled) {
    if (active_) set_autocast(dev_, true, dtype);
  }
  ~AutocastGuard() {
    if (active_) {
      set_autocast(dev_, was_, c10::ScalarType::BFloat16);
      if (!was_) at::autocast::clear_cache();
    }
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType dev_;
  bool was_, active_;
};

}  // namespace cifar::compat

// c10::Allocator: allocate() lost its const qualifier and copy_data() became a required override in 2.3.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define CIFAR100_ALLOCATE_CONST
#define CIFAR100_ALLOCATOR_NEEDS_COPY_DATA 1
#else
#define CIFAR100_ALLOCATE_CONST const
#define CIFAR100_ALLOCATOR_NEEDS_COPY_DATA 0
#endif

// Optimizer state is keyed by the parameter's TensorImpl: as a printed pointer (std::string) in 1.13,
// as the pointer itself in later versions.
#include <sstream>
#include <string>
#include <type_traits>

#include <ATen/core/Tensor.h>

namespace cifar::compat {
template <typename StateMap>
typename StateMap::key_type optimizer_state_key(const StateMap&, const at::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}
}  // namespace cifar::compat

// c10d: the Gloo and NCCL process groups derive from ProcessGroup in 1.13 and from Backend since 2.0;
// both have the same collectives. Defined only where CIFAR100_COMPAT_C10D is (the dist module).
#ifdef CIFAR100_COMPAT_C10D
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
namespace cifar::compat {
using Collectives = c10d::Backend;
}
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
namespace cifar::compat {
using Collectives = c10d::ProcessGroup;
}
#endif
#endif
