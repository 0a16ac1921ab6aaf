// Weight files: a PyTorch state dict (a dict of name -> tensor in torch.save's format, see
// pt_file.h) that Python's torch.load reads directly (weights_only too) and load_state_dict accepts.
// Written atomically; loading is strict and names the file and key of any mismatch.
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
