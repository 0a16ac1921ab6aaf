// Anchor translation unit that owns the LibTorch precompiled header (CMake target cifar_torch_pch).
