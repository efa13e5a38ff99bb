# swarm_test(NAME SOURCES a.cpp b.cpp LIBS lib1 lib2 [LABELS l])
# Builds a GoogleTest binary and registers its tests with CTest.
include(GoogleTest)
function(swarm_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    SWARM_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    SWARM_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared"
    SWARM_BINARY="$<TARGET_FILE_DIR:swarm>/swarm")
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()
