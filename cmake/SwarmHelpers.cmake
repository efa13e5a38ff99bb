include(GoogleTest)

# swarm_check_listed(DIR dir PATTERNS *.cpp ... LISTED files...): fails the configure when a source
# file in DIR is in no source list, so a new file cannot be silently left out of the build. LISTED
# paths are relative to the current source folder.
function(swarm_check_listed)
  cmake_parse_arguments(ARG "" "DIR" "PATTERNS;LISTED" ${ARGN})
  set(globs)
  foreach(pattern ${ARG_PATTERNS})
    list(APPEND globs ${ARG_DIR}/${pattern})
  endforeach()
  file(GLOB present CONFIGURE_DEPENDS ${globs})
  set(listed)
  foreach(file ${ARG_LISTED})
    get_filename_component(file ${file} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND listed ${file})
  endforeach()
  foreach(file ${present})
    if(NOT file IN_LIST listed)
      file(RELATIVE_PATH shown ${PROJECT_SOURCE_DIR} ${file})
      file(RELATIVE_PATH lists ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/CMakeLists.txt)
      message(FATAL_ERROR "swarm: ${shown} is in no source list; add it to ${lists}")
    endif()
  endforeach()
endfunction()

# swarm_module(NAME SOURCES a.cpp b.cpp DEPS lib1 lib2): one module of src/ as a library. DEPS are
# the modules it may use (the arrows of the module map) and its third-party libraries; the
# layering check (cmake/CheckLayering.cmake) refuses an include outside those arrows.
function(swarm_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  swarm_check_listed(DIR ${CMAKE_CURRENT_SOURCE_DIR} PATTERNS *.cpp LISTED ${ARG_SOURCES})
  add_library(${name} ${ARG_SOURCES})
  # Headers are included as "module/file.h" from src/.
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  if(TARGET swarm_layering_check)
    add_dependencies(${name} swarm_layering_check)
  endif()
endfunction()

# swarm_test(NAME SOURCES a.cpp LIBS lib1 lib2 [NEEDS_BINARY] [TIMEOUT s] [LABELS l])
# A GoogleTest binary whose tests CTest runs one by one, linked with swarm_test_support.
# NEEDS_BINARY: the test runs the `swarm` binary (SWARM_BINARY), so it is built first.
function(swarm_test name)
  cmake_parse_arguments(ARG "NEEDS_BINARY" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} swarm_test_support GTest::gtest GTest::gtest_main
                        GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    SWARM_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    SWARM_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared"
    SWARM_BINARY="${PROJECT_BINARY_DIR}/src/cli/swarm")
  if(ARG_NEEDS_BINARY)
    add_dependencies(${name} swarm)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()

# swarm_tests_in_folder(LIBS ...): one test binary per test_*.cpp in the current source folder.
function(swarm_tests_in_folder)
  cmake_parse_arguments(ARG "" "" "LIBS" ${ARGN})
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/test_*.cpp)
  foreach(file ${tests})
    get_filename_component(name ${file} NAME_WE)
    swarm_test(${name} SOURCES ${file} LIBS ${ARG_LIBS})
  endforeach()
endfunction()
