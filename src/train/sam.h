// Sharpness-Aware Minimization (Foret et al. 2021) and its adaptive variant ASAM (Kwon et al. 2021), as
// in the reference implementation (davda54/sam). After the first backward pass, each parameter moves by
//   e = rho * T^2 g / ||T g||      (T = |w| for ASAM, 1 for SAM; the norm over all parameters)
// the gradient is taken again at w + e, and the parameters are restored to w exactly before the optimizer
// steps with that second gradient.
#pragma once
#include <vector>

#include <ATen/core/Tensor.h>

namespace cifar::train {

// The perturbation e for each parameter from its current gradient (an undefined tensor where a parameter
// has no gradient).
std::vector<at::Tensor> sam_perturbation(const std::vector<at::Tensor>& params, double rho, bool adaptive);

// Moves the parameters to w + e in place; returns copies of w for sam_restore.
std::vector<at::Tensor> sam_perturb(const std::vector<at::Tensor>& params, double rho, bool adaptive);
// Puts the saved weights back (bit for bit).
void sam_restore(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& saved);

}  // namespace cifar::train
