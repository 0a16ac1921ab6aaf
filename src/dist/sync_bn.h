// Synchronised batch norm: in training, every BatchNorm2d of the model normalises with the mean and
// variance of the global batch (all ranks), as torch.nn.SyncBatchNorm does. The statistics are summed
// across ranks with an all-reduce that autograd differentiates (its gradient is again a sum over ranks),
// in two passes (mean, then the centred sum of squares), accumulated in double on CPU as ATen's batch
// norm does. Evaluation uses the running
// statistics, unchanged.
#pragma once

namespace cifar::dist {

class Group;

// Routes the model's batch norms through the group (null: back to local batch norm).
void use_sync_batch_norm(Group* group);

}  // namespace cifar::dist
