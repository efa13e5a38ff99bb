include(GoogleTest)

# swarm_module(NAME DEPS a b c): a library of every *.cpp directly in the current source folder.
function(swarm_module name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cpp)
  if(NOT sources)
    return()
  endif()
  add_library(${name} ${sources})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# swarm_test(NAME SOURCES a.cpp LIBS lib1 lib2 [NEEDS_BINARY] [TIMEOUT s] [LABELS l])
# A GoogleTest binary whose tests CTest runs one by one. NEEDS_BINARY: the test runs the `swarm`
# binary (SWARM_BINARY), so it is built first.
function(swarm_test name)
  cmake_parse_arguments(ARG "NEEDS_BINARY" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
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
