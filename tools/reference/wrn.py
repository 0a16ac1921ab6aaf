"""PyTorch twin of cifar100's WideResNet (src/model/wide_resnet.cpp), module for module, with the same
parameter names (stem, layer1.0.bn1, ..., bn, fc). Used only by parity tests and benchmarks."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class WideBasic(nn.Module):
    def __init__(self, in_planes, out_planes, stride, dropout):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.shortcut = None
        if in_planes != out_planes or stride != 1:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.dropout(F.relu(self.bn2(y))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    def __init__(self, depth=28, width=10, dropout=0.3, num_classes=100):
        super().__init__()
        assert (depth - 4) % 6 == 0, "depth must be 6n+4"
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        in_planes = widths[0]
        for g in range(3):
            blocks = []
            for b in range(n):
                stride = 2 if (b == 0 and g > 0) else 1
                blocks.append(WideBasic(in_planes, widths[g + 1], stride, dropout))
                in_planes = widths[g + 1]
            setattr(self, f"layer{g + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        y = self.stem(x)
        y = self.layer3(self.layer2(self.layer1(y)))
        y = F.relu(self.bn(y))
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(y)
