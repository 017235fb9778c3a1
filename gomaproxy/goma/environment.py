"""Environment variables that the goma protocol carries for gcc and clang compiles."""

from __future__ import annotations

# The variables a goma client forwards with a gcc or clang compile, because they change
# what the compiler does; it drops the rest of its environment.
GCC_SERVER_IMPORTANT_ENV = (
    "PWD",
    "LIBRARY_PATH",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
    "MACOSX_DEPLOYMENT_TARGET",
    "SDKROOT",
)
