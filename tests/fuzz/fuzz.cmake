# tests/fuzz/fuzz.cmake — the fuzz targets of tests/fuzz/fuzz_*.c.
#
# Used two ways:
#   1. From the top CMakeLists.txt:   include(tests/fuzz/fuzz.cmake)
#      - OM_FUZZ_REPLAY (ON): each target is also built with
#        tests/fuzz/replay_main.c as main() against omcore, with whatever
#        compiler and sanitizers the build uses, and registered as the unit
#        test unit.fuzz_<name>: it feeds every seed in
#        tests/fuzz/corpus/<name>/ to the target once.  Seeds and saved
#        crash reproducers are regression tests in every build.
#      - OM_FUZZ (OFF): also build the libFuzzer binaries; needs clang as
#        the C compiler (cmake -DCMAKE_C_COMPILER=clang -DOM_FUZZ=ON).
#   2. From tests/fuzz/CMakeLists.txt, a stand-alone project that builds
#      only the libFuzzer binaries (what scripts/fuzz.sh uses, so that
#      fuzzing does not depend on the rest of the tree compiling with clang).
#
# Every libFuzzer binary links the pure modules (parsers with no I/O beyond
# reading a config's secret files), instrumented for coverage:
set(OM_FUZZ_PURE_SOURCES core/ref.c upstream/authparse.c core/manifest.c core/route.c core/om.c
    core/image_config.c core/config.c core/config_keys.c core/config_upstreams.c core/config_value.c
    core/config_yaml.c core/config_cluster.c core/config_storage.c core/config_limits.c
    http/clientaddr.c cache/store_s3_xml.c core/policy.c)

set(OM_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(OM_FUZZ_SRC_DIR ${OM_FUZZ_DIR}/../../src ABSOLUTE)
option(OM_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)
option(OM_FUZZ_REPLAY "Replay the fuzz seed corpora as unit tests" ON)

file(GLOB OM_FUZZ_TARGET_SOURCES CONFIGURE_DEPENDS ${OM_FUZZ_DIR}/fuzz_*.c)

# Replay runners (top-level build only: they link omcore).
if(OM_FUZZ_REPLAY AND TARGET omcore)
  foreach(src ${OM_FUZZ_TARGET_SOURCES})
    get_filename_component(name ${src} NAME_WE)          # fuzz_ref
    string(REGEX REPLACE "^fuzz_" "" short ${name})       # ref
    add_executable(${name}_replay ${src} ${OM_FUZZ_DIR}/replay_main.c)
    target_include_directories(${name}_replay PRIVATE ${OM_FUZZ_DIR})
    target_link_libraries(${name}_replay PRIVATE omcore)
    add_test(NAME unit.${name} COMMAND ${name}_replay ${OM_FUZZ_DIR}/corpus/${short})
    set_tests_properties(unit.${name} PROPERTIES TIMEOUT 120 LABELS "unit;fuzz")
  endforeach()
endif()

if(OM_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "OM_FUZZ needs clang: cmake -DCMAKE_C_COMPILER=clang ...")
  endif()
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(OM_FUZZ_DEPS REQUIRED IMPORTED_TARGET jansson libfyaml libcurl expat)

  set(OM_FUZZ_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer -g -O1)
  list(TRANSFORM OM_FUZZ_PURE_SOURCES PREPEND ${OM_FUZZ_SRC_DIR}/)
  add_library(omfuzz_pure STATIC ${OM_FUZZ_PURE_SOURCES})
  target_include_directories(omfuzz_pure PUBLIC ${OM_FUZZ_SRC_DIR})
  target_compile_options(omfuzz_pure PRIVATE ${OM_FUZZ_FLAGS} -fsanitize=fuzzer-no-link)
  target_link_libraries(omfuzz_pure PUBLIC PkgConfig::OM_FUZZ_DEPS)

  foreach(src ${OM_FUZZ_TARGET_SOURCES})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_include_directories(${name} PRIVATE ${OM_FUZZ_DIR})
    target_compile_options(${name} PRIVATE ${OM_FUZZ_FLAGS} -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${name} PRIVATE omfuzz_pure)
  endforeach()
endif()
