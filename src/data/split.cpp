#include "data/split.h"

#include <algorithm>
#include <numeric>

#include "common/error.h"
#include "common/rng.h"

namespace cifar::data {

TrainValSplit stratified_split(const std::vector<uint8_t>& labels, int64_t val_size, uint64_t seed,
                               int num_classes) {
  const auto n = static_cast<int64_t>(labels.size());
  if (val_size < 0 || val_size >= n)
    fail("val_size = {} leaves no images to train on: the training split holds {} images (choose val_size < {})",
         val_size, n, n);
  std::vector<std::vector<int64_t>> by_class(static_cast<size_t>(num_classes));
  for (int64_t i = 0; i < n; ++i) by_class[labels[static_cast<size_t>(i)]].push_back(i);

  // Quotas proportional to class sizes; the leftover goes to the largest remainders (ties: lower class).
  std::vector<int64_t> quota(static_cast<size_t>(num_classes));
  std::vector<std::pair<int64_t, int>> remainders;  // (remainder numerator, class)
  int64_t assigned = 0;
  for (int c = 0; c < num_classes; ++c) {
    const int64_t nc = static_cast<int64_t>(by_class[static_cast<size_t>(c)].size());
    quota[static_cast<size_t>(c)] = val_size * nc / n;
    assigned += quota[static_cast<size_t>(c)];
    remainders.push_back({val_size * nc % n, c});
  }
  std::stable_sort(remainders.begin(), remainders.end(), [](auto a, auto b) { return a.first > b.first; });
  for (size_t k = 0; assigned < val_size && k < remainders.size(); ++k) {
    ++quota[static_cast<size_t>(remainders[k].second)];
    ++assigned;
  }

  TrainValSplit s;
  for (int c = 0; c < num_classes; ++c) {
    auto members = by_class[static_cast<size_t>(c)];
    Rng rng(seed, Stream::Split, {static_cast<uint64_t>(c)});
    rng.shuffle(members.begin(), members.end());
    const auto q = static_cast<size_t>(quota[static_cast<size_t>(c)]);
    s.val.insert(s.val.end(), members.begin(), members.begin() + static_cast<std::ptrdiff_t>(q));
    s.train.insert(s.train.end(), members.begin() + static_cast<std::ptrdiff_t>(q), members.end());
  }
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

void limit_train(TrainValSplit& split, int64_t limit) {
  if (limit > 0 && limit < static_cast<int64_t>(split.train.size())) split.train.resize(static_cast<size_t>(limit));
}

}  // namespace cifar::data
