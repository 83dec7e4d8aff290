# samband_add_plugin(NAME SOURCES...): builds an adapter exactly as a vendor would: a MODULE with
# hidden visibility that links ONLY samband::plugin_api and has no undefined symbols.
function(samband_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE samband::plugin_api)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  # (Not in the sanitizer build of this repository, SAMBAND_FUZZ: the ASan runtime's symbols come
  # from the executable that loads the plugin.)
  if(NOT SAMBAND_FUZZ)
    target_link_options(${name} PRIVATE "-Wl,--no-undefined")
  endif()
  if(SAMBAND_PLUGIN_OUTPUT_DIR)  # in-tree: every plugin beside the others, for tests and the demo
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${SAMBAND_PLUGIN_OUTPUT_DIR})
  endif()
endfunction()
