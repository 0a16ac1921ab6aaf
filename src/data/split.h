// Train/validation split: a stratified validation set carved from the training images (per-class quotas
// by largest remainder, members chosen by the seed), and the optional limit on training images.
#pragma once
#include <cstdint>
#include <vector>

namespace cifar::data {

struct TrainValSplit {
  std::vector<int64_t> train;  // indices into the training split, ascending (file order)
  std::vector<int64_t> val;    // ascending
};

// `labels` are the fine labels of the whole training split. Throws if val_size leaves nothing to train on.
TrainValSplit stratified_split(const std::vector<uint8_t>& labels, int64_t val_size, uint64_t seed,
                               int num_classes = 100);
// Keeps the first `limit` training indices (0 = all).
void limit_train(TrainValSplit& split, int64_t limit);

}  // namespace cifar::data
