# embed.cmake — compile the web UI (ui/**) into the binary.
#
# Two modes in one file:
#
#  * included from CMakeLists.txt (after add_library(omcore ...)):
#        include(cmake/embed.cmake)
#    adds a build step that regenerates ${CMAKE_BINARY_DIR}/generated/ui_embed.c
#    whenever a file under ui/ (or this script) changes, and adds that file
#    to omcore.  A new file under ui/ is picked up by the CONFIGURE_DEPENDS
#    glob (cmake re-runs itself on the next build).
#
#  * run as a script (cmake -DOM_UI_DIR=... -DOM_UI_OUT=... -P embed.cmake):
#    writes the generated C file.  For every file it emits the bytes (plus a
#    trailing NUL so an empty file is still a valid array), the path relative
#    to ui/, a Content-Type chosen by extension (an unknown extension stops
#    the build: nobody should ship a file the server would label wrongly) and
#    a strong ETag: the first 16 hex digits of the content's SHA-256.
#
#    Cache busting: in *.html files, the placeholder {{v:NAME}} is replaced by
#    the ETag hash of ui/NAME before the HTML's own hash is taken, so
#    index.html can load "/ui/app.js?v={{v:app.js}}" and the server can let
#    browsers keep a versioned asset for a year (see ui.c).
#
# Only CMake itself is used (file(READ ... HEX), string(SHA256)): no xxd, no
# python, no npm at build time.

if(NOT CMAKE_SCRIPT_MODE_FILE)
  # ---- configure-time part: register the generation step -----------------
  set(OM_UI_DIR ${CMAKE_SOURCE_DIR}/ui)
  set(OM_UI_OUT ${CMAKE_BINARY_DIR}/generated/ui_embed.c)
  file(GLOB_RECURSE OM_UI_INPUTS CONFIGURE_DEPENDS ${OM_UI_DIR}/*)
  add_custom_command(
    OUTPUT ${OM_UI_OUT}
    COMMAND ${CMAKE_COMMAND} -DOM_UI_DIR=${OM_UI_DIR} -DOM_UI_OUT=${OM_UI_OUT}
            -P ${CMAKE_CURRENT_LIST_FILE}
    DEPENDS ${OM_UI_INPUTS} ${CMAKE_CURRENT_LIST_FILE}
    COMMENT "Embedding the web UI (ui/) into generated/ui_embed.c"
    VERBATIM)
  target_sources(omcore PRIVATE ${OM_UI_OUT})
  return()
endif()

# ---- script part: generate the C file --------------------------------------
if(NOT OM_UI_DIR OR NOT OM_UI_OUT)
  message(FATAL_ERROR "embed.cmake: pass -DOM_UI_DIR=<ui dir> -DOM_UI_OUT=<output .c>")
endif()

# Extension -> Content-Type.  Text types say their charset: the files are UTF-8.
function(om_ui_content_type path out)
  string(REGEX MATCH "\\.[^./]+$" ext "${path}")
  string(TOLOWER "${ext}" ext)
  if(ext STREQUAL ".html")
    set(ct "text/html; charset=utf-8")
  elseif(ext STREQUAL ".css")
    set(ct "text/css; charset=utf-8")
  elseif(ext STREQUAL ".js" OR ext STREQUAL ".mjs")
    set(ct "text/javascript; charset=utf-8")
  elseif(ext STREQUAL ".json")
    set(ct "application/json; charset=utf-8")
  elseif(ext STREQUAL ".svg")
    set(ct "image/svg+xml")
  elseif(ext STREQUAL ".png")
    set(ct "image/png")
  elseif(ext STREQUAL ".ico")
    set(ct "image/x-icon")
  elseif(ext STREQUAL ".woff2")
    set(ct "font/woff2")
  elseif(ext STREQUAL ".txt")
    set(ct "text/plain; charset=utf-8")
  else()
    message(FATAL_ERROR "embed.cmake: no Content-Type known for ui/${path}; add it here")
  endif()
  set(${out} "${ct}" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE files RELATIVE ${OM_UI_DIR} ${OM_UI_DIR}/*)
list(SORT files)
# Editor droppings and hidden files are not part of the UI.
list(FILTER files EXCLUDE REGEX "(^|/)\\.|~$|\\.swp$")
if(NOT files)
  message(FATAL_ERROR "embed.cmake: ${OM_UI_DIR} holds no files")
endif()

get_filename_component(out_dir ${OM_UI_OUT} DIRECTORY)
file(MAKE_DIRECTORY ${out_dir})

# Pass 1: hashes of the non-HTML files (the HTML may name them).
foreach(f IN LISTS files)
  # The path goes into a C string literal and a URL as it is.
  if(NOT f MATCHES "^[A-Za-z0-9._/-]+$")
    message(FATAL_ERROR "embed.cmake: ui/${f}: use only A-Z a-z 0-9 . _ / - in UI file names")
  endif()
  if(NOT f MATCHES "\\.html$")
    file(SHA256 ${OM_UI_DIR}/${f} h)
    string(SUBSTRING "${h}" 0 16 h)
    set(hash_${f} ${h})
  endif()
endforeach()

set(body "")
set(table "")
set(i 0)
foreach(f IN LISTS files)
  set(src ${OM_UI_DIR}/${f})
  if(f MATCHES "\\.html$")
    # Substitute {{v:NAME}} and embed the substituted copy.
    file(READ ${src} text)
    string(REGEX MATCHALL "{{v:[^}]+}}" refs "${text}")
    list(REMOVE_DUPLICATES refs)
    foreach(r IN LISTS refs)
      string(REGEX REPLACE "^{{v:(.*)}}$" "\\1" name "${r}")
      if(NOT DEFINED hash_${name})
        message(FATAL_ERROR "embed.cmake: ui/${f} names {{v:${name}}} but ui/${name} does not exist")
      endif()
      string(REPLACE "${r}" "${hash_${name}}" text "${text}")
    endforeach()
    set(src ${out_dir}/ui_embed_${i}.html)
    file(WRITE ${src} "${text}")
    file(SHA256 ${src} h)
    string(SUBSTRING "${h}" 0 16 h)
    set(hash_${f} ${h})
  endif()
  file(SIZE ${src} size)
  file(READ ${src} hex HEX)
  # 16 bytes per line, each byte as 0xNN,
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){16})" "\\1\n    " hex "${hex}")
  om_ui_content_type(${f} ct)
  string(APPEND body "/* ui/${f} (${size} bytes) */\nstatic const unsigned char f${i}[] = {\n    ${hex}0x00\n};\n")
  string(APPEND table "    {\"${f}\", \"${ct}\", \"${hash_${f}}\", f${i}, ${size}},\n")
  math(EXPR i "${i} + 1")
endforeach()

set(content "/* Generated by cmake/embed.cmake from ui/ — do not edit. */\n#include \"admin/ui.h\"\n\n${body}\nconst struct om_ui_file om_ui_files[] = {\n${table}};\nconst size_t om_ui_n_files = ${i};\n")
# The step only runs when an input changed, so the output always changes too.
file(WRITE ${OM_UI_OUT} "${content}")
