# CMake package for an installed libpatchrec (scripts/install.sh PREFIX puts this file in
# PREFIX/lib/cmake/patchrec). Relocatable: every path is found from this file's location.
#
#   find_package(patchrec REQUIRED)
#   target_link_libraries(app PRIVATE patchrec::patchrec)         # libpatchrec.so
#   target_link_libraries(app PRIVATE patchrec::patchrec_static)  # libpatchrec.a
include(CMakeFindDependencyMacro)
find_dependency(Threads)

get_filename_component(_patchrec_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET patchrec::patchrec)
  add_library(patchrec::patchrec SHARED IMPORTED)
  set_target_properties(patchrec::patchrec PROPERTIES
    IMPORTED_LOCATION "${_patchrec_prefix}/lib/libpatchrec.so"
    # Rust's cdylib has no SONAME: link it by name, so programs ask for libpatchrec.so
    # rather than the absolute path it had at build time.
    IMPORTED_NO_SONAME TRUE
    INTERFACE_INCLUDE_DIRECTORIES "${_patchrec_prefix}/include")
endif()

if(NOT TARGET patchrec::patchrec_static)
  add_library(patchrec::patchrec_static STATIC IMPORTED)
  set_target_properties(patchrec::patchrec_static PROPERTIES
    IMPORTED_LOCATION "${_patchrec_prefix}/lib/libpatchrec.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_patchrec_prefix}/include"
    # What the Rust standard library needs from the system (rustc --print native-static-libs).
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m;rt;util;gcc_s")
endif()

unset(_patchrec_prefix)
