// Weight files: a PyTorch state dict (dict of name -> tensor, pickled with torch's format) that Python's
// torch.load reads directly and load_state_dict accepts. Written atomically; loading is strict and names
// the file and key of any mismatch.
#pragma once
#include <string>

namespace torch::nn {
class Module;
}

namespace cifar::model {

void save_weights(const torch::nn::Module& m, const std::string& path);
// Copies every tensor of the file into the module (any device), checking names and shapes both ways.
void load_weights(torch::nn::Module& m, const std::string& path);

}  // namespace cifar::model
