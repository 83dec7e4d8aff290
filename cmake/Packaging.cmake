# Debian packages through CPack (scripts/package): `samband` (daemon, plugins, schemas, XSDs, the
# hardened systemd unit, /etc/samband, docs) and `samband-dev` (the plugin SDK: headers, CMake
# package, samband-plugin-check, the guide) so a vendor installs only the SDK.
# Every install() without a COMPONENT belongs to `runtime` (CMAKE_INSTALL_DEFAULT_COMPONENT_NAME).

# Files only the package carries: the unit, /etc/samband, the docs.
configure_file(${PROJECT_SOURCE_DIR}/config/package/samband.service.in
  ${PROJECT_BINARY_DIR}/package/samband.service @ONLY)
set(SAMBAND_PLUGINDIR ${CMAKE_INSTALL_FULL_LIBDIR}/samband/plugins)
set(SAMBAND_DATADIR ${CMAKE_INSTALL_FULL_DATADIR}/samband)
configure_file(${PROJECT_SOURCE_DIR}/config/package/samband.json.in
  ${PROJECT_BINARY_DIR}/package/samband.json @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/package/samband.service
  DESTINATION /lib/systemd/system COMPONENT runtime)  # Debian 12 policy: units in /lib
install(FILES ${PROJECT_BINARY_DIR}/package/samband.json
  ${PROJECT_SOURCE_DIR}/config/package/gp-directory.json
  DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/samband COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/config/rph-templates.json
  DESTINATION ${CMAKE_INSTALL_DATADIR}/samband COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/operations.md
  ${PROJECT_SOURCE_DIR}/docs/configuration.md ${PROJECT_SOURCE_DIR}/docs/rph.md
  ${PROJECT_SOURCE_DIR}/docs/nhn.md ${PROJECT_SOURCE_DIR}/docs/file-plugin.md
  ${PROJECT_SOURCE_DIR}/docs/architecture.md ${PROJECT_SOURCE_DIR}/docs/rendered-note.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/docs/plugin-guide.md ${PROJECT_SOURCE_DIR}/docs/abi/versioning.md
  ${PROJECT_SOURCE_DIR}/plugin-api/CHANGELOG-ABI.md
  DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/samband-dev COMPONENT dev)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/plugins/example-vendor/
  DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/samband-dev/example-vendor COMPONENT dev)
install(FILES ${PROJECT_SOURCE_DIR}/config/schemas/samband.event.json
  DESTINATION ${CMAKE_INSTALL_DATADIR}/samband-dev COMPONENT dev OPTIONAL)

# Debian's copyright file and a changelog (gzip -9n, as policy asks) in each package's doc folder.
set(pkg_changelog ${PROJECT_BINARY_DIR}/package/changelog)
file(WRITE ${pkg_changelog} "samband (${PROJECT_VERSION}) unstable; urgency=medium

  * Built from the Samband source tree by scripts/package; see README.md.

 -- Samband maintainers <samband@example.invalid>  Mon, 30 Nov 2026 12:00:00 +0000
")
find_program(GZIP_PROGRAM gzip REQUIRED)
add_custom_command(OUTPUT ${pkg_changelog}.gz
  COMMAND ${GZIP_PROGRAM} -9nkf ${pkg_changelog} DEPENDS ${pkg_changelog})
add_custom_target(samband_package_changelog ALL DEPENDS ${pkg_changelog}.gz)
foreach(component_dir runtime:samband dev:samband-dev)
  string(REPLACE ":" ";" parts ${component_dir})
  list(GET parts 0 component)
  list(GET parts 1 docdir)
  install(FILES ${pkg_changelog}.gz ${PROJECT_SOURCE_DIR}/config/package/copyright
    DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${docdir} COMPONENT ${component})
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME samband)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "Samband")
set(CPACK_PACKAGE_CONTACT "Samband maintainers <samband@example.invalid>")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://example.invalid/samband")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Integration engine for Norwegian municipal health services")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME samband)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION net)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "adduser, libxml2-utils")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/config/package/postinst ${PROJECT_SOURCE_DIR}/config/package/postrm
  ${PROJECT_SOURCE_DIR}/config/package/conffiles)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
  "Integration engine for Rask psykisk helsehjelp (RPH)
 Samband routes RPH events between the municipality's EPJ, GPs over
 Norsk Helsenett (MsgHead + Dialogmelding, Apprec, EDI 2.0) and other
 systems, durably: the daemon, its plugins, the event schemas, NHN's
 XSDs, a hardened systemd unit and a starting config.")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME samband-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_RECOMMENDS "cmake, g++, rapidjson-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "Plugin SDK for the Samband integration engine
 The plain C plugin ABI (samband/plugin.h), the header-only C++ SDK,
 their CMake package (find_package(SambandPluginApi)), the conformance
 kit samband-plugin-check, and the plugin guide with an example plugin.
 Install only this to build and check an adapter plugin.")
include(CPack)
