# Every third-party dependency is found here, once.
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(yaml-cpp REQUIRED)          # target: yaml-cpp (0.7)
find_package(prometheus-cpp CONFIG REQUIRED)  # target: prometheus-cpp::core
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)       # needs protobuf-compiler-grpc on Debian
# GoogleTest (and gmock) only for the tests: a build with MOESERVE_TESTS=OFF needs neither.
if(MOESERVE_TESTS)
  find_package(GTest REQUIRED)
endif()

# gloo ships no CMake config on Debian: the library is plain libgloo.
find_path(GLOO_INCLUDE_DIR gloo/context.h REQUIRED)
find_library(GLOO_LIBRARY gloo REQUIRED)
add_library(gloo INTERFACE IMPORTED)
set_target_properties(gloo PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${GLOO_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${GLOO_LIBRARY};Threads::Threads")

# Boost.Asio/Beast as one target. BOOST_ASIO_NO_DEPRECATED keeps the API current;
# with GCC 12 and C++20, <utility> must come before Asio headers (see common/asio.h).
add_library(moeserve_boost INTERFACE)
target_link_libraries(moeserve_boost INTERFACE Boost::boost OpenSSL::SSL OpenSSL::Crypto
                                               Threads::Threads)
target_compile_definitions(moeserve_boost INTERFACE BOOST_ASIO_NO_DEPRECATED
                                                    BOOST_BEAST_USE_STD_STRING_VIEW)

# CUDA: optional. AUTO enables it when nvcc is found (PATH or /usr/local/cuda).
set(MOESERVE_HAVE_CUDA OFF)
if(NOT MOESERVE_CUDA STREQUAL "OFF")
  find_program(MOESERVE_NVCC nvcc HINTS /usr/local/cuda/bin)
  if(MOESERVE_NVCC)
    set(CMAKE_CUDA_COMPILER ${MOESERVE_NVCC})
    set(CMAKE_CUDA_ARCHITECTURES 90-real 90-virtual)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
    set(MOESERVE_HAVE_CUDA ON)
    message(STATUS "moeserve: CUDA ${CUDAToolkit_VERSION} found; kernels/cuda builds for sm_90")
  elseif(MOESERVE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MOESERVE_CUDA=ON but nvcc was not found")
  else()
    message(STATUS "moeserve: nvcc not found; building without CUDA")
  endif()
endif()
