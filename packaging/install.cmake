# packaging/install.cmake — `make install` / `cmake --install`: the binary,
# the systemd unit and the default config.  Included from CMakeLists.txt
# after add_executable(ocimirror ...):
#
#   include(packaging/install.cmake)
#
# Layout (prefix /usr/local unless CMAKE_INSTALL_PREFIX says otherwise):
#   <prefix>/bin/ocimirror
#   <prefix>/lib/systemd/system/ocimirror.service   (systemd looks there for
#                                                    /usr and /usr/local)
#   <prefix>/share/doc/ocimirror/*.md
#   /etc/ocimirror/ocimirror.yaml                    (OM_CONFIG_DIR; only when
#                                                    absent: never overwrites)
# DESTDIR is honoured everywhere (packagers: DESTDIR=/tmp/pkg cmake --install).

include(GNUInstallDirs)

set(OM_CONFIG_DIR "/etc/ocimirror" CACHE PATH
    "Where the default config is installed and where the unit reads it")
set(OM_SYSTEMD_UNIT_DIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system" CACHE PATH
    "Where the systemd unit is installed")

set(OM_BIN "${CMAKE_INSTALL_FULL_BINDIR}/ocimirror")
set(OM_CONFIG_FILE "${OM_CONFIG_DIR}/ocimirror.yaml")
set(OM_DOC_DIR "${CMAKE_INSTALL_FULL_DOCDIR}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/ocimirror.service.in
               ${CMAKE_BINARY_DIR}/packaging/ocimirror.service @ONLY)

install(TARGETS ocimirror RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_BINARY_DIR}/packaging/ocimirror.service
        DESTINATION ${OM_SYSTEMD_UNIT_DIR})
file(GLOB OM_DOCS ${CMAKE_SOURCE_DIR}/docs/*.md ${CMAKE_SOURCE_DIR}/docs/*.yaml)
install(FILES ${OM_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The config is the operator's once installed: put the default in place only
# when there is none, so a re-install or upgrade keeps local edits.
install(CODE "
  set(_dst \"\$ENV{DESTDIR}${OM_CONFIG_FILE}\")
  if(EXISTS \"\${_dst}\")
    message(STATUS \"Keeping existing: \${_dst}\")
  else()
    file(INSTALL \"${CMAKE_CURRENT_LIST_DIR}/ocimirror.yaml\"
         DESTINATION \"${OM_CONFIG_DIR}\"
         FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  endif()
")
