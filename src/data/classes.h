// The official CIFAR-100 class names (fine and coarse, in label order) and the fine -> coarse mapping.
// Artifacts carry the names of the data set they were trained on; these are the fallback when that data
// set is not at hand (`cifar100 export`) and the reference the real-data test checks the files against.
#pragma once
#include <array>

#include "data/cifar.h"

namespace cifar::data {

extern const std::array<const char*, kNumClasses> kFineNames;
extern const std::array<const char*, kNumCoarse> kCoarseNames;
extern const std::array<int, kNumClasses> kFineToCoarse;

}  // namespace cifar::data
