# npm ci of the FHIR test peers into the build tree (cmake -DSRC -DDST -DNPM -P install.cmake).
# Skipped when DST already holds node_modules installed from the same lock file.
if(NOT NPM)
  message(FATAL_ERROR "npm is not installed: the FHIR tests need Node.js 20 and npm "
                      "(scripts/install-deps installs them)")
endif()
file(MAKE_DIRECTORY ${DST})
foreach(f package.json package-lock.json server.js validate.js)
  configure_file(${SRC}/${f} ${DST}/${f} COPYONLY)
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
  message(FATAL_ERROR "npm ci of the FHIR test peers failed (${rc})")
endif()
file(WRITE ${DST}/node_modules/.samband-lock ${lock_hash})
