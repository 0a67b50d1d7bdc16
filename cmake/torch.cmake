# libtorch from PyTorch 2.x as the PyPI torch wheel ships it (deploy/setup.sh installs it into
# .venv): one CUDA-enabled build that also runs on machines without a GPU.
#
# LENSD_PYTHON's torch is asked where the wheel's CMake config and the CUDA toolkit wheels are
# (cmake/torch_paths.py). The torch prefix goes FIRST in CMAKE_PREFIX_PATH, so that a libtorch of
# the system (Debian's libtorch-dev 1.13 in /usr/lib) is never linked beside the wheel's: two
# libc10 in one process abort at start. The torch config runs FindCUDA and enable_language(CUDA);
# where no CUDA toolkit of the system is given (CUDA_TOOLKIT_ROOT_DIR), the cuda-toolkit wheels'
# is used. Set LENSD_TORCH_PREFIX to build against another libtorch (a GPU machine's PyTorch).
set(LENSD_TORCH_PREFIX "" CACHE PATH
    "CMake prefix of libtorch (default: the torch wheel of LENSD_PYTHON)")
if(NOT LENSD_TORCH_PREFIX)
  execute_process(
    COMMAND ${LENSD_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/torch_paths.py
    OUTPUT_VARIABLE lensd_torch_paths RESULT_VARIABLE lensd_torch_rc
    ERROR_VARIABLE lensd_torch_error OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT lensd_torch_rc EQUAL 0)
    message(FATAL_ERROR "${LENSD_PYTHON} cannot import torch (run deploy/setup.sh, or set "
                        "LENSD_PYTHON or LENSD_TORCH_PREFIX): ${lensd_torch_error}")
  endif()
  string(REPLACE "\n" ";" lensd_torch_paths "${lensd_torch_paths}")
  list(GET lensd_torch_paths 0 LENSD_TORCH_PREFIX)
  list(GET lensd_torch_paths 1 lensd_cuda_root)
  if(lensd_cuda_root AND NOT CUDA_TOOLKIT_ROOT_DIR AND EXISTS "${lensd_cuda_root}/bin/nvcc")
    set(CUDA_TOOLKIT_ROOT_DIR "${lensd_cuda_root}" CACHE PATH "CUDA toolkit (the wheels')")
    set(CMAKE_CUDA_COMPILER "${lensd_cuda_root}/bin/nvcc" CACHE FILEPATH "nvcc (the wheels')")
  endif()
endif()
list(PREPEND CMAKE_PREFIX_PATH "${LENSD_TORCH_PREFIX}")
# lensd compiles no CUDA code of its own; one architecture keeps the config's checks quiet.
if(NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "9.0" CACHE STRING "CUDA architectures (lensd compiles no kernels)")
endif()
find_package(Torch REQUIRED)
if(Torch_VERSION VERSION_LESS 2.8)
  message(FATAL_ERROR "lensd needs PyTorch 2.8 or newer; found ${Torch_VERSION} at "
                      "${LENSD_TORCH_PREFIX}")
endif()
message(STATUS "libtorch ${Torch_VERSION} from ${LENSD_TORCH_PREFIX}")
