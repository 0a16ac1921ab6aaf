# Finds LibTorch for cifar100: Debian's LibTorch 1.13 (libtorch-dev, CPU only) by default, or the LibTorch 2.x
# inside a PyTorch wheel when CIFAR100_TORCH_DIR names the wheel's torch/ directory (site-packages/torch;
# scripts/build.sh --torch venv passes the project venv's). The wheel carries CUDA; its runtime, cuDNN and NCCL
# come as nvidia-* wheels beside it, and this file makes the build use exactly those:
#   - nvcc and the CUDA headers from the nvidia-cuda-nvcc/-runtime wheels of torch's own CUDA version, through
#     a toolkit view in the build tree (the wheels lack the unversioned library names CMake's finders look
#     for); without them, the system toolkit (nvcc on PATH);
#   - nccl.h from the nvidia-nccl wheel, the library torch was built with;
#   - links and run paths that reach the wheels' libraries before any system CUDA installation.
# Sets CIFAR100_TORCH_CUDA (this LibTorch has CUDA) and CIFAR100_NCCL_INCLUDE (empty without NCCL headers).

set(CIFAR100_TORCH_DIR "" CACHE PATH
    "the torch/ directory of a PyTorch wheel to build against (empty: Debian's LibTorch)")
# The tests run PyTorch's own tools beside our binaries (torchrun, whose rendezvous store speaks another
# protocol in 1.13 than in 2.x): they need the Python of this very LibTorch.
set(CIFAR100_TORCH_PYTHON "/usr/bin/python3" CACHE FILEPATH
    "a Python whose torch package holds this LibTorch (Debian's python3 for Debian's LibTorch)")

set(_cifar100_wheel_libs "")
if(CIFAR100_TORCH_DIR)
  if(NOT EXISTS "${CIFAR100_TORCH_DIR}/share/cmake/Torch/TorchConfig.cmake")
    message(FATAL_ERROR "CIFAR100_TORCH_DIR=${CIFAR100_TORCH_DIR} holds no share/cmake/Torch/TorchConfig.cmake: "
                        "name the torch/ directory of a PyTorch wheel (scripts/setup-python.sh makes one in .venv/)")
  endif()
  # First on the prefix path, so that torch/lib and the wheel's Caffe2 config win over Debian's LibTorch when
  # both are installed (find_library searches the prefix path before the system directories).
  list(PREPEND CMAKE_PREFIX_PATH "${CIFAR100_TORCH_DIR}")
  get_filename_component(_cifar100_site "${CIFAR100_TORCH_DIR}" DIRECTORY)
  file(GLOB _cifar100_wheel_libs LIST_DIRECTORIES true "${_cifar100_site}/nvidia/*/lib")
  file(GLOB _cifar100_wheel_nvcc "${_cifar100_site}/nvidia/cu*/bin/nvcc")
  if(_cifar100_wheel_nvcc AND NOT CMAKE_CUDA_COMPILER)
    list(GET _cifar100_wheel_nvcc 0 _cifar100_wheel_nvcc)
    get_filename_component(_cifar100_cuda_root "${_cifar100_wheel_nvcc}/../.." ABSOLUTE)
    # The view: bin/, include/ and nvvm/ link to the wheel's; lib64/ names every library also without its
    # version suffix (libcudart.so -> libcudart.so.13), which is what FindCUDA and FindCUDAToolkit look for.
    # lib/ is the same directory: the wheel's nvcc.profile links from $(TOP)/lib, and without it CMake's check
    # of nvcc finds libcudart_static.a only where a system toolkit happens to be on the linker's path.
    set(_view "${CMAKE_BINARY_DIR}/cuda-toolkit")
    file(REMOVE_RECURSE "${_view}")
    file(MAKE_DIRECTORY "${_view}/lib64")
    file(CREATE_LINK lib64 "${_view}/lib" SYMBOLIC)
    foreach(_d bin include nvvm)
      if(EXISTS "${_cifar100_cuda_root}/${_d}")
        file(CREATE_LINK "${_cifar100_cuda_root}/${_d}" "${_view}/${_d}" SYMBOLIC)
      endif()
    endforeach()
    file(GLOB _libs "${_cifar100_cuda_root}/lib/lib*.so*" "${_cifar100_cuda_root}/lib/lib*.a")
    foreach(_lib ${_libs})
      get_filename_component(_name "${_lib}" NAME)
      file(CREATE_LINK "${_lib}" "${_view}/lib64/${_name}" SYMBOLIC)
      string(REGEX REPLACE "\\.so\\.[0-9.]+$" ".so" _plain "${_name}")
      if(NOT _plain STREQUAL _name AND NOT EXISTS "${_view}/lib64/${_plain}")
        file(CREATE_LINK "${_lib}" "${_view}/lib64/${_plain}" SYMBOLIC)
      endif()
    endforeach()
    set(CUDA_TOOLKIT_ROOT_DIR "${_view}" CACHE PATH "CUDA toolkit: a view of the wheels' (cmake/torch.cmake)" FORCE)
    set(CUDAToolkit_ROOT "${_view}")
    set(CMAKE_CUDA_COMPILER "${_view}/bin/nvcc" CACHE FILEPATH "nvcc from the wheels (cmake/torch.cmake)" FORCE)
    # FindCUDA's library searches fall back to the system directories when a name is missing from the root; the
    # names torch links are pinned to the view.
    set(CUDA_CUDART_LIBRARY "${_view}/lib64/libcudart.so" CACHE FILEPATH "" FORCE)
    set(CUDA_cudart_LIBRARY "${_view}/lib64/libcudart.so" CACHE FILEPATH "" FORCE)
    set(CUDA_nvrtc_LIBRARY "${_view}/lib64/libnvrtc.so" CACHE FILEPATH "" FORCE)
    set(CUDA_NVRTC_LIB "${_view}/lib64/libnvrtc.so" CACHE FILEPATH "" FORCE)
    message(STATUS "cifar100: CUDA toolkit from the wheels (${_cifar100_cuda_root})")
  endif()
else()
  # Debian's libtorch-dev puts TorchConfig.cmake here.
  list(APPEND CMAKE_PREFIX_PATH /usr/lib/x86_64-linux-gnu/cmake/Torch)
endif()

find_package(Torch REQUIRED)
message(STATUS "cifar100: Torch ${Torch_VERSION} from ${Torch_DIR}")

set(CIFAR100_TORCH_CUDA OFF)
if(CAFFE2_USE_CUDA OR TORCH_CUDA_LIBRARIES)
  set(CIFAR100_TORCH_CUDA ON)
endif()

set(CIFAR100_NCCL_INCLUDE "")
if(CIFAR100_TORCH_CUDA)
  set(_nccl_hints "")
  if(CIFAR100_TORCH_DIR)
    list(APPEND _nccl_hints "${_cifar100_site}/nvidia/nccl/include")
  endif()
  find_path(CIFAR100_NCCL_HEADER_DIR nccl.h HINTS ${_nccl_hints} ${TORCH_INCLUDE_DIRS} ${CUDAToolkit_INCLUDE_DIRS}
            ENV NCCL_INCLUDE_DIR)
  if(CIFAR100_NCCL_HEADER_DIR)
    set(CIFAR100_NCCL_INCLUDE "${CIFAR100_NCCL_HEADER_DIR}")
  endif()
endif()

if(_cifar100_wheel_libs)
  # Link against, and at run time load, the wheels' CUDA, cuDNN and NCCL libraries (the versions libtorch_cuda
  # was built with) even where a system CUDA installation is on the linker's default path.
  string(REPLACE ";" ":" _rpath_link "${_cifar100_wheel_libs}")
  add_link_options("LINKER:-rpath-link,${_rpath_link}")
  set(CMAKE_BUILD_RPATH "${_cifar100_wheel_libs}")
  message(STATUS "cifar100: CUDA libraries from the wheels (${_cifar100_site}/nvidia)")
endif()
