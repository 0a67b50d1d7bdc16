"""Prints where a Python environment's torch wheel keeps what a C++ build needs, one per line:

    the CMake prefix of libtorch (torch/share/cmake)
    the CUDA toolkit of the nvidia-* wheels (include/, lib/, bin/nvcc), or "" if torch has no CUDA
    or the wheels are not installed (then FindCUDA looks in the system's usual places)
    torch's version

Used by cmake/torch.cmake and deploy/setup.sh.
"""
import glob
import os

import torch


def cuda_toolkit_root():
    if not torch.version.cuda:
        return ""
    try:
        import nvidia  # namespace package of the nvidia-* wheels that the torch wheel requires
    except ImportError:
        return ""
    major = torch.version.cuda.split(".")[0]
    for base in nvidia.__path__:
        root = os.path.join(base, f"cu{major}")
        if glob.glob(os.path.join(root, "lib", "libcudart.so*")):
            return root
    return ""


print(torch.utils.cmake_prefix_path)
print(cuda_toolkit_root())
print(torch.__version__.split("+")[0])
