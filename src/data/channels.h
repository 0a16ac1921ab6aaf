// The data set that a training platform's input channels hold (SageMaker's input/data/<channel>/), as the
// config settings that point training at it. The platform layer reads which channels there are; this layer
// knows what a CIFAR-100 data set looks like on disk.
#pragma once

#include <string>
#include <vector>

#include "common/config.h"

namespace cifar::data {

struct InputChannel {
  std::string name;
  std::string dir;                  // where the platform put the channel's files
  std::string input_mode = "File";  // File, FastFile or Pipe (SageMaker's TrainingInputMode)
  std::string env_name;             // the variable that can also name `dir` (SM_CHANNEL_TRAIN), for messages
};

// What the channels hold, as config settings (data_dir or archive), or nothing when there is no channel:
//   - a `train` and a `test` channel in the official binary layout (train.bin / test.bin, anywhere below
//     the channel's directory; label-name files optional): linked into a data-set directory under
//     `scratch_dir`, so that read-only (FastFile) mounts work;
//   - one channel holding cifar-100-binary.tar.gz (any *.tar.gz or *.tgz) -> archive;
//   - one channel holding an extracted data set (train.bin, test.bin and both label files) -> data_dir.
// Pipe mode, a declared channel without its directory, and anything else fail with a message that says
// what each channel holds and what is expected.
std::vector<Setting> channel_settings(const std::vector<InputChannel>& channels, const std::string& scratch_dir);

}  // namespace cifar::data
