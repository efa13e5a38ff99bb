# The layering check: fails when a file of a module under src/ includes a header of a module it may
# not depend on. Run on every build (the swarm_layering_check target) and by its own test:
#   cmake -DSWARM_SOURCE_DIR=<tree holding src/> -P cmake/CheckLayering.cmake
# The arrows below are the module map of the design; a module may include what it reaches through
# them, directly or through a module in between. tests/ and bench/ may include anything;
# src/kernels/cuda is part of kernels.
cmake_policy(VERSION 3.25)

set(allowed_base)
set(allowed_kernels base)
set(allowed_model kernels base)
set(allowed_shard model kernels base)
set(allowed_transport base)
set(allowed_registry transport base)
set(allowed_peer registry transport shard base)
set(allowed_router registry transport model base)
set(allowed_gateway peer router registry shard model base)
set(allowed_cli gateway peer router registry shard model base)
set(modules base kernels model shard transport registry peer router gateway cli)

if(NOT SWARM_SOURCE_DIR)
  message(FATAL_ERROR "CheckLayering: set -DSWARM_SOURCE_DIR=<tree holding src/>")
endif()

# What each module reaches: the closure of its arrows, and itself.
foreach(module ${modules})
  set(reach_${module} ${module})
  set(queue ${allowed_${module}})
  while(queue)
    list(POP_FRONT queue next)
    if(NOT next IN_LIST reach_${module})
      list(APPEND reach_${module} ${next})
      list(APPEND queue ${allowed_${next}})
    endif()
  endwhile()
endforeach()

# A folder of src/ outside the map would escape the check.
file(GLOB entries LIST_DIRECTORIES true RELATIVE ${SWARM_SOURCE_DIR}/src ${SWARM_SOURCE_DIR}/src/*)
foreach(entry ${entries})
  if(IS_DIRECTORY ${SWARM_SOURCE_DIR}/src/${entry} AND NOT entry IN_LIST modules)
    message(FATAL_ERROR "src/${entry}: not a module of the module map; add it and its arrows to "
                        "cmake/CheckLayering.cmake")
  endif()
endforeach()

set(include_regex "^[ \t]*#[ \t]*include[ \t]*\"([a-z_]+)/")
set(violations 0)
foreach(module ${modules})
  file(GLOB_RECURSE files ${SWARM_SOURCE_DIR}/src/${module}/*.h ${SWARM_SOURCE_DIR}/src/${module}/*.hpp
       ${SWARM_SOURCE_DIR}/src/${module}/*.cpp ${SWARM_SOURCE_DIR}/src/${module}/*.cc
       ${SWARM_SOURCE_DIR}/src/${module}/*.cu ${SWARM_SOURCE_DIR}/src/${module}/*.cuh)
  foreach(file ${files})
    # Cheap first pass over the include lines only; line numbers only for a file that breaks a rule.
    file(STRINGS ${file} includes REGEX "${include_regex}")
    set(bad FALSE)
    foreach(line IN LISTS includes)
      string(REGEX MATCH "${include_regex}" match "${line}")
      set(target ${CMAKE_MATCH_1})
      if(target IN_LIST modules AND NOT target IN_LIST reach_${module})
        set(bad TRUE)
      endif()
    endforeach()
    if(NOT bad)
      continue()
    endif()
    file(RELATIVE_PATH shown ${SWARM_SOURCE_DIR} ${file})
    file(STRINGS ${file} lines)
    set(number 0)
    foreach(line IN LISTS lines)
      math(EXPR number "${number} + 1")
      if(line MATCHES "${include_regex}")
        set(target ${CMAKE_MATCH_1})
        if(target IN_LIST modules AND NOT target IN_LIST reach_${module})
          string(REPLACE ";" " " may "${allowed_${module}}")
          if(NOT may)
            set(may "nothing")
          endif()
          message(SEND_ERROR "${shown}:${number}: ${module} -> ${target} is not an allowed arrow "
                             "(${module} may depend on: ${may}): ${line}")
          math(EXPR violations "${violations} + 1")
        endif()
      endif()
    endforeach()
  endforeach()
endforeach()

if(violations GREATER 0)
  message(FATAL_ERROR "layering check: ${violations} include(s) break the module map")
endif()
