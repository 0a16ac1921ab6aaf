#include "dist/sync_bn.h"

#include <torch/torch.h>

#include "dist/group.h"

namespace cifar::dist {

namespace {
Group* g_group = nullptr;

// y = sum over ranks of x; the gradient of a sum over ranks is the sum over ranks of the gradients.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) {
    torch::Tensor y = x.clone();
    g_group->allreduce(y);
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext*, torch::autograd::tensor_list g) {
    torch::Tensor y = g[0].clone();
    g_group->allreduce(y);
    return {y};
  }
};

}  // namespace

void set_sync_batch_norm_group(Group* group) { g_group = group; }

at::Tensor sync_batch_norm(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x) {
  if (!bn.is_training() || !g_group) return bn.forward(x);
  const int64_t c = x.size(1);
  // Computed in ATen's accumulation type for batch norm: double on CPU (its kernels sum in double; in
  // float32 the composed backward loses three digits in the first layers), float on CUDA.
  const auto acc = x.is_cuda() ? torch::kFloat32 : torch::kFloat64;
  const torch::Tensor xf = x.to(acc);
  const std::vector<int64_t> dims{0, 2, 3};
  const torch::Tensor local_count = torch::full({1}, static_cast<double>(x.numel() / c), xf.options());
  const torch::Tensor s1 = AllReduceSum::apply(torch::cat({xf.sum(dims), local_count}));
  const torch::Tensor count = s1.narrow(0, c, 1).detach();
  const torch::Tensor mean = s1.narrow(0, 0, c) / count;
  const torch::Tensor xc = xf - mean.view({1, c, 1, 1});
  const torch::Tensor var = AllReduceSum::apply(xc.square().sum(dims)) / count;
  const torch::Tensor invstd = torch::rsqrt(var + bn.options.eps());
  torch::Tensor y = xc * (invstd * bn.weight.to(acc)).view({1, c, 1, 1}) + bn.bias.to(acc).view({1, c, 1, 1});
  {
    torch::NoGradGuard no_grad;
    const double m = bn.options.momentum().value_or(0.1);
    bn.running_mean.mul_(1 - m).add_(mean.detach().to(bn.running_mean.scalar_type()) * m);
    bn.running_var.mul_(1 - m).add_((var.detach() * (count / (count - 1))).to(bn.running_var.scalar_type()) * m);
    bn.num_batches_tracked.add_(1);
  }
  return y.to(x.scalar_type());
}

}  // namespace cifar::dist
