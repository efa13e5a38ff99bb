# Proves that the layering check refuses an include against the module map: it runs
# cmake/CheckLayering.cmake on a small tree with one bad include (shard -> peer) and expects a
# failure naming the file, the line and the arrow; and on the same tree without it, a pass.
#   cmake -DSWARM_SOURCE_DIR=<repository> -DWORK_DIR=<scratch folder> -P layering_check_test.cmake
cmake_policy(VERSION 3.25)
set(check ${SWARM_SOURCE_DIR}/cmake/CheckLayering.cmake)
file(REMOVE_RECURSE ${WORK_DIR})

# Allowed: peer -> shard, shard -> kernels (through model), kernels/cuda -> base, cli -> transport.
file(WRITE ${WORK_DIR}/src/peer/server.cpp "#include \"peer/server.h\"\n#include \"shard/stack.h\"\n")
file(WRITE ${WORK_DIR}/src/shard/stack.h "#pragma once\n#include \"model/config.h\"\n")
file(WRITE ${WORK_DIR}/src/shard/stack.cpp "#include \"shard/stack.h\"\n\n#include \"kernels/backend.h\"\n")
file(WRITE ${WORK_DIR}/src/kernels/cuda/add.cu "#include \"base/half.h\"\n")
file(WRITE ${WORK_DIR}/src/cli/main.cpp "#include \"transport/codec.h\"\n#include <vector>\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DSWARM_SOURCE_DIR=${WORK_DIR} -P ${check}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the check refused a tree that keeps the layering:\n${out}")
endif()

# Refused: shard -> peer on line 3 of a file, kernels/cuda -> shard on line 1.
file(WRITE ${WORK_DIR}/src/shard/stack.cpp
     "#include \"shard/stack.h\"\n\n#include \"peer/server.h\"\n")
file(WRITE ${WORK_DIR}/src/kernels/cuda/add.cu "  #  include \"shard/stack.h\"\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DSWARM_SOURCE_DIR=${WORK_DIR} -P ${check}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "the check passed a tree where shard includes peer:\n${out}")
endif()
foreach(expected "src/shard/stack.cpp:3: shard -> peer is not an allowed arrow"
                 "src/kernels/cuda/add.cu:1: kernels -> shard is not an allowed arrow"
                 "2 include(s) break the module map")
  string(FIND "${out}" "${expected}" at)
  if(at LESS 0)
    message(FATAL_ERROR "the check's report lacks \"${expected}\":\n${out}")
  endif()
endforeach()

# A folder of src/ outside the module map is refused too.
file(WRITE ${WORK_DIR}/src/shard/stack.cpp "#include \"shard/stack.h\"\n")
file(WRITE ${WORK_DIR}/src/kernels/cuda/add.cu "#include \"base/half.h\"\n")
file(WRITE ${WORK_DIR}/src/relay/relay.cpp "#include \"base/half.h\"\n")
execute_process(COMMAND ${CMAKE_COMMAND} -DSWARM_SOURCE_DIR=${WORK_DIR} -P ${check}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0 OR NOT out MATCHES "src/relay: not a module of the module map")
  message(FATAL_ERROR "the check passed an unknown module folder:\n${out}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
message(STATUS "layering check: refuses shard -> peer and kernels -> shard, passes the rest")
