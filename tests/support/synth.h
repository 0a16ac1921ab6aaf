// Synthetic CIFAR-100 data for tests: records in the official format whose classes are easy to learn
// (each class has its own colour and stripe pattern plus noise), label-name files, and tar.gz archives
// laid out like the official cifar-100-binary.tar.gz.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/cifar.h"

namespace cifar::synth {

// `n` records over the first `classes` fine labels (round robin), coarse label = fine / 5.
data::Split make_split(int64_t n, int classes, uint64_t seed);
// Writes train.bin, test.bin and both label-name files into `dir`.
void write_dataset_dir(const std::string& dir, int64_t n_train, int64_t n_test, int classes, uint64_t seed);
// Packs the files of `dir` into a gzip tar with the entries under `prefix/` (e.g. "cifar-100-binary").
// `compression`: "gzip" (default), "bzip2" or "xz" (tests of what extraction refuses).
void write_tar_gz(const std::string& archive, const std::string& dir, const std::string& prefix,
                  const std::vector<std::string>& files, const std::string& compression = "gzip");

}  // namespace cifar::synth
