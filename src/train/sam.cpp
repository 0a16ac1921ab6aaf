#include "train/sam.h"

#include <torch/torch.h>

namespace cifar::train {

std::vector<at::Tensor> sam_perturbation(const std::vector<at::Tensor>& params, double rho, bool adaptive) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> scaled(params.size());  // T g
  std::vector<at::Tensor> norms;
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& g = params[i].grad();
    if (!g.defined()) continue;
    scaled[i] = adaptive ? params[i].abs() * g : g.clone();
    norms.push_back(scaled[i].to(at::kFloat).norm());
  }
  std::vector<at::Tensor> e(params.size());
  if (norms.empty()) return e;
  const at::Tensor scale = rho / (at::stack(norms).norm() + 1e-12);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!scaled[i].defined()) continue;
    at::Tensor ei = adaptive ? scaled[i] * params[i].abs() : scaled[i];  // T^2 g
    e[i] = (ei * scale).to(params[i].scalar_type());
  }
  return e;
}

std::vector<at::Tensor> sam_perturb(const std::vector<at::Tensor>& params, double rho, bool adaptive) {
  const std::vector<at::Tensor> e = sam_perturbation(params, rho, adaptive);
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> saved(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!e[i].defined()) continue;
    saved[i] = params[i].detach().clone();
    params[i].add_(e[i]);
  }
  return saved;
}

void sam_restore(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i)
    if (saved[i].defined()) params[i].copy_(saved[i]);
}

}  // namespace cifar::train
