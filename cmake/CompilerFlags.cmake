# Compiler flags for project code. Third-party headers are included as SYSTEM so
# -Werror applies to our code only.
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_C_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CCACHE_PROGRAM})
endif()

add_library(moeserve_flags INTERFACE)
target_compile_options(moeserve_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -Wno-missing-field-initializers>)
# GCC 12's -Wrestrict reports false positives inside libstdc++'s std::string at -O3
# (GCC bug 105329); it stays a warning source of noise, not of bugs, so it is off.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(moeserve_flags INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-restrict>)
endif()
target_compile_definitions(moeserve_flags INTERFACE
  MOESERVE_VERSION="${PROJECT_VERSION}")

set(moeserve_sanitize "")
if(MOESERVE_ASAN)
  list(APPEND moeserve_sanitize -fsanitize=address -fno-omit-frame-pointer)
endif()
if(MOESERVE_UBSAN)
  list(APPEND moeserve_sanitize -fsanitize=undefined -fno-sanitize-recover=undefined)
endif()
if(MOESERVE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MOESERVE_FUZZ needs clang: configure with CC=clang-14 CXX=clang++-14 "
                        "(make fuzz does)")
  endif()
  if(MOESERVE_TESTS OR MOESERVE_BENCH OR NOT MOESERVE_CUDA STREQUAL "OFF")
    message(FATAL_ERROR "MOESERVE_FUZZ builds only the fuzz targets: configure with "
                        "-DMOESERVE_TESTS=OFF -DMOESERVE_BENCH=OFF -DMOESERVE_CUDA=OFF")
  endif()
  # Coverage for libFuzzer everywhere; the fuzz targets link -fsanitize=fuzzer themselves.
  list(APPEND moeserve_sanitize -fsanitize=fuzzer-no-link,address,undefined
       -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g)
endif()
if(moeserve_sanitize)
  add_compile_options(${moeserve_sanitize})
  add_link_options(${moeserve_sanitize})
endif()

# moeserve_library(name SOURCES ... DEPS ...): a static library of project code.
function(moeserve_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE moeserve_flags ${ARG_PRIVATE_DEPS})
endfunction()

# moeserve_executable(name SOURCES ... DEPS ...): a binary in build/bin.
function(moeserve_executable name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE moeserve_flags ${ARG_DEPS})
endfunction()

# moeserve_test(name SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s]): a GoogleTest
# binary registered with CTest, one CTest entry per binary (keeps CI start-up small).
function(moeserve_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE moeserve_flags ${ARG_DEPS} GTest::gtest GTest::gmock
                                        GTest::gtest_main)
  # Test code is compiled at -O1: a test file spends most of its compile time optimising
  # GoogleTest and JSON boilerplate at -O3 (types_test.cpp: 12.4 s user at -O3, 9.4 at
  # -O1), and CI builds about 135 of them on 2 cores. The code under test comes from
  # the project's libraries, which stay at the build type's level.
  if(CMAKE_BUILD_TYPE STREQUAL "Release")
    target_compile_options(${name} PRIVATE -O1)
  endif()
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set(timeout 300)
  if(ARG_TIMEOUT)
    set(timeout ${ARG_TIMEOUT})
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout}
    ENVIRONMENT "MOESERVE_SOURCE_DIR=${CMAKE_SOURCE_DIR};MOESERVE_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
  if(ARG_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()

# moeserve_glob_library(name DIR dir DEPS ...): a static library of every .cpp in `dir`
# (re-globbed on each build, so adding a file needs no CMake edit). A folder with no
# sources yet gives an INTERFACE library with the same dependencies.
function(moeserve_glob_library name)
  cmake_parse_arguments(ARG "" "DIR" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${ARG_DIR}/*.cpp)
  if(sources)
    moeserve_library(${name} SOURCES ${sources} DEPS ${ARG_DEPS} PRIVATE_DEPS ${ARG_PRIVATE_DEPS})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${CMAKE_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARG_DEPS})
  endif()
endfunction()

# moeserve_glob_tests(name DEPS ...): one GoogleTest binary of every *_test.cpp in the
# current folder, registered with CTest under `name`.
function(moeserve_glob_tests name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "DEPS;LABELS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cpp)
  if(sources)
    moeserve_test(${name} SOURCES ${sources} DEPS ${ARG_DEPS} LABELS ${ARG_LABELS}
                  TIMEOUT ${ARG_TIMEOUT})
  endif()
endfunction()
