# npm ci of a folder of test peers into the build tree:
#   cmake -DSRC=<folder with package.json, package-lock.json, *.js> -DDST=<build folder>
#         -DNPM=<npm> -DWHAT="<what the peers are for>" -P npm_peer_install.cmake
# Skipped when DST already holds node_modules installed from the same lock file. Peers are never
# installed globally and never used by the daemon.
if(NOT NPM)
  message(FATAL_ERROR "npm is not installed: ${WHAT} need Node.js 20 and npm "
                      "(scripts/install-deps installs them)")
endif()
file(MAKE_DIRECTORY ${DST})
file(GLOB peer_files ${SRC}/*.json ${SRC}/*.js)
foreach(f ${peer_files})
  get_filename_component(name ${f} NAME)
  configure_file(${f} ${DST}/${name} COPYONLY)
endforeach()
file(SHA256 ${SRC}/package-lock.json lock_hash)
if(EXISTS ${DST}/node_modules/.samband-lock)
  file(READ ${DST}/node_modules/.samband-lock installed)
  if(installed STREQUAL lock_hash)
    return()
  endif()
endif()
execute_process(COMMAND ${NPM} ci --no-audit --no-fund --loglevel=error
  WORKING_DIRECTORY ${DST} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "npm ci of ${WHAT} failed (${rc})")
endif()
file(WRITE ${DST}/node_modules/.samband-lock ${lock_hash})
