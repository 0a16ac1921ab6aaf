// Synchronised batch norm: in training, every BatchNorm2d of the model normalises with the mean and
// variance of the global batch (all ranks), as torch.nn.SyncBatchNorm does. The statistics are summed
// across ranks with an all-reduce that autograd differentiates (its gradient is again a sum over ranks),
// in two passes (mean, then the centred sum of squares), accumulated in double on CPU as ATen's batch
// norm does. Evaluation uses the running
// statistics, unchanged.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/batchnorm.h>

namespace cifar::dist {

class Group;

// The group whose ranks sync_batch_norm() reduces over (null: none, and it runs local batch norm).
void set_sync_batch_norm_group(Group* group);
// `bn` applied to `x` with the global batch's statistics in training mode; local batch norm otherwise. It has
// the model's batch-norm override signature (model::set_batch_norm_override), which the trainer installs.
at::Tensor sync_batch_norm(torch::nn::BatchNorm2dImpl& bn, const at::Tensor& x);

}  // namespace cifar::dist
