"""Tables of gcc/clang and clang-cl command lines with their relocatability outcome."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pytest

from gomaproxy.exec.relocatable import (
    CLANGCL_PATH_FLAG_PREFIXES,
    GCC_PATH_FLAG_PREFIXES,
    NotRelocatable,
    UnknownFlag,
    check_relocatable,
    clangcl_relocatable,
    gcc_relocatable,
    is_absolute,
)

OK = None


class Case(NamedTuple):
    """One command line, its environment and the expected outcome.

    ``error`` is None for a relocatable request, else the exact exception type, and
    ``message`` is a fragment of the expected exception message.
    """

    id: str
    args: Sequence[str]
    env: Sequence[str] = ()
    windows: bool = False
    error: type[NotRelocatable] | None = OK
    message: str = ""


def gcc(
    case_id: str,
    *args: str,
    env: Sequence[str] = (),
    windows: bool = False,
    error: type[NotRelocatable] | None = OK,
    message: str = "",
) -> Case:
    """Build a gcc/clang case whose argv[0] is a relative ``clang``."""
    return Case(case_id, ("clang", *args), env, windows, error, message)


def clangcl(
    case_id: str,
    *args: str,
    env: Sequence[str] = (),
    windows: bool = True,
    error: type[NotRelocatable] | None = OK,
    message: str = "",
) -> Case:
    """Build a clang-cl case, in Windows path style unless ``windows`` is False."""
    return Case(case_id, ("clang-cl", *args), env, windows, error, message)


NR = NotRelocatable
UF = UnknownFlag

GCC_CASES: list[Case] = [
    # Plain compiles and relative paths.
    gcc("plain-compile", "-c", "foo.c", "-o", "foo.o"),
    gcc("relative-argv0", "-c", "../src/foo.c", "-o", "out/foo.o"),
    gcc("I-joined-relative", "-Iinclude", "-c", "foo.c"),
    gcc("I-separate-relative", "-I", "include", "-c", "foo.c"),
    gcc("I-joined-absolute", "-I/usr/include", error=NR, message="abs path: -I/usr/include"),
    gcc("I-separate-absolute", "-I", "/usr/include", error=NR, message="abs path: /usr/include"),
    gcc("o-joined-relative", "-c", "foo.c", "-ofoo.o"),
    gcc("o-joined-absolute", "-o/tmp/foo.o", error=NR, message="abs path: -o/tmp/foo.o"),
    gcc("o-separate-absolute", "-o", "/tmp/foo.o", error=NR, message="abs path: /tmp/foo.o"),
    gcc("B-joined-absolute", "-B/opt/bin", error=NR, message="abs path: -B/opt/bin"),
    gcc("B-separate-relative", "-B", "third_party/bin"),
    gcc("F-joined-absolute", "-F/Library/Frameworks", error=NR, message="abs path: -F/Library"),
    gcc("F-separate-relative", "-F", "Frameworks"),
    gcc("isystem-joined-relative", "-isystemthird_party/include"),
    gcc("isystem-joined-absolute", "-isystem/usr/include", error=NR, message="abs path: -isystem"),
    gcc(
        "isystem-separate-absolute", "-isystem", "/usr/inc", error=NR, message="abs path: /usr/inc"
    ),
    gcc("include-joined-relative", "-includeconfig.h"),
    gcc("include-separate-absolute", "-include", "/cfg.h", error=NR, message="abs path: /cfg.h"),
    # -include= must win over -include, or "=/cfg.h" would count as relative.
    gcc("include-eq-absolute", "-include=/cfg.h", error=NR, message="abs path: -include=/cfg.h"),
    gcc("include-eq-relative", "-include=cfg.h"),
    gcc("dash-dash-include-eq-absolute", "--include=/cfg.h", error=NR, message="abs path"),
    gcc("dash-dash-include-joined-absolute", "--include/cfg.h", error=NR, message="abs path"),
    gcc(
        "dash-dash-include-separate",
        "--include",
        "cfg.h",
        error=UF,
        message="unknown flag: --include",
    ),
    gcc("sysroot-eq-relative", "--sysroot=../sysroot"),
    gcc(
        "sysroot-eq-absolute",
        "--sysroot=/sysroot",
        error=NR,
        message="abs path: --sysroot=/sysroot",
    ),
    gcc("sysroot-separate-relative", "--sysroot", "build/sysroot"),
    gcc(
        "sysroot-separate-absolute", "--sysroot", "/sysroot", error=NR, message="abs path: /sysroot"
    ),
    gcc("resource-dir-relative", "-resource-dir=../lib/clang"),
    gcc("resource-dir-absolute", "-resource-dir=/lib/clang", error=NR, message="abs path"),
    gcc("profile-instr-use-relative", "-fprofile-instr-use=default.profdata"),
    gcc("profile-instr-use-absolute", "-fprofile-instr-use=/p.profdata", error=NR, message="abs"),
    gcc("profile-sample-use-absolute", "-fprofile-sample-use=/p.prof", error=NR, message="abs"),
    gcc("sanitize-blacklist-absolute", "-fsanitize-blacklist=/bl.txt", error=NR, message="abs"),
    gcc("profile-list-absolute", "-fprofile-list=/list.txt", error=NR, message="abs"),
    gcc("crash-diagnostics-dir-absolute", "-fcrash-diagnostics-dir=/tmp", error=NR, message="abs"),
    gcc(
        "coverage-compilation-dir-absolute",
        "-fcoverage-compilation-dir=/s",
        error=NR,
        message="abs",
    ),
    gcc("coverage-compilation-dir-relative", "-fcoverage-compilation-dir=."),
    gcc("iframework-separate-relative", "-iframework", "Frameworks"),
    gcc("iframework-separate-absolute", "-iframework", "/F", error=NR, message="abs path: /F"),
    gcc("iframework-joined-unknown", "-iframeworkFrameworks", error=UF, message="unknown flag"),
    gcc("MF-separate-relative", "-MMD", "-MF", "foo.d"),
    gcc(
        "MF-separate-absolute", "-MD", "-MF", "/tmp/foo.d", error=NR, message="abs path: /tmp/foo.d"
    ),
    gcc("MF-joined-unknown", "-MFfoo.d", error=UF, message="unknown flag: -MFfoo.d"),
    gcc("isysroot-separate-relative", "-isysroot", "sdk"),
    gcc("isysroot-separate-absolute", "-isysroot", "/sdk", error=NR, message="abs path: /sdk"),
    gcc("idirafter-separate-relative", "-idirafter", "include"),
    gcc("idirafter-separate-absolute", "-idirafter", "/inc", error=NR, message="abs path: /inc"),
    gcc("idirafter-joined-unknown", "-idirafterinclude", error=UF, message="unknown flag"),
    gcc("path-flag-at-end", "-c", "foo.c", "-I"),
    # Header maps.
    gcc("hmap-I-joined", "-Iout/foo.hmap", error=NR, message="hmap file: -Iout/foo.hmap"),
    gcc("hmap-I-separate", "-I", "out/foo.hmap", error=NR, message="hmap file: out/foo.hmap"),
    gcc("hmap-include-separate", "-include", "foo.hmap", error=NR, message="hmap file"),
    gcc(
        "hmap-absolute-separate", "-I", "/out/foo.hmap", error=NR, message="abs path: /out/foo.hmap"
    ),
    # Debug builds need a compilation directory.
    gcc("debug-g-alone", "-g", "-c", "foo.c", error=NR, message="debug build: ['-g']"),
    gcc(
        "debug-several-flags",
        "-gsplit-dwarf",
        "-gline-tables-only",
        error=NR,
        message="['-gsplit-dwarf', '-gline-tables-only']",
    ),
    gcc("debug-g-then-g0", "-g", "-g0", "-c", "foo.c"),
    gcc("debug-g0-then-g", "-g0", "-gdwarf-4", error=NR, message="debug build: ['-gdwarf-4']"),
    gcc("debug-dir-joined", "-g", "-fdebug-compilation-dir=.", "-c", "foo.c"),
    gcc("debug-dir-separate", "-g", "-fdebug-compilation-dir", ".", "-c", "foo.c"),
    gcc("debug-dir-before-g", "-fdebug-compilation-dir=.", "-g"),
    gcc("debug-file-compilation-dir", "-g", "-ffile-compilation-dir=."),
    gcc("debug-dir-joined-absolute", "-g", "-fdebug-compilation-dir=/s", error=NR, message="abs"),
    gcc(
        "debug-dir-separate-absolute", "-g", "-fdebug-compilation-dir", "/s", error=NR, message="/s"
    ),
    gcc(
        "debug-coverage-dir-not-enough",
        "-g",
        "-fcoverage-compilation-dir=.",
        error=NR,
        message="debug",
    ),
    gcc("debug-dir-xclang-separate", "-g", "-Xclang", "-fdebug-compilation-dir", "-Xclang", "."),
    gcc(
        "debug-dir-xclang-joined-last", "-g", "-c", "foo.c", "-Xclang", "-fdebug-compilation-dir=."
    ),
    # A joined path flag leaves -Xclang pending, so -c becomes a clang argument.
    gcc(
        "debug-dir-xclang-joined-keeps-subcommand",
        "-g",
        "-Xclang",
        "-fdebug-compilation-dir=.",
        "-c",
        error=UF,
        message="unknown clang flag: -c",
    ),
    gcc(
        "debug-dir-mllvm-separate",
        "-g",
        "-mllvm",
        "-fdebug-compilation-dir",
        "-mllvm",
        ".",
        error=NR,
        message="-fdebug-compilation-dir not supported for llvm",
    ),
    gcc(
        "debug-dir-mllvm-joined",
        "-mllvm",
        "-ffile-compilation-dir=.",
        error=NR,
        message="not supported for llvm",
    ),
    gcc("debug-checked-before-sub-args", "-g", "-Wl,-z,defs", error=NR, message="debug build"),
    gcc(
        "pnacl-allow-translate",
        "--pnacl-allow-translate",
        error=NR,
        message="--pnacl-allow-translate",
    ),
    # Sub-arguments of -Wa, -Wl and -Wp.
    gcc("wa-fatal-warnings", "-Wa,--fatal-warnings", "-c", "foo.s"),
    gcc("wa-unknown", "-Wa,--noexecstack", error=UF, message="unknown as flag: --noexecstack"),
    gcc(
        "wa-second-value-unknown",
        "-Wa,--fatal-warnings,-g",
        error=UF,
        message="unknown as flag: -g",
    ),
    gcc("wa-empty", "-Wa,", error=UF, message="unknown as flag: "),
    gcc("wl-unsupported", "-Wl,-z,defs", error=UF, message="unsupported subcommand args ld"),
    gcc("wp-unsupported", "-Wp,-MD,foo.d", error=UF, message="unsupported subcommand args cpp"),
    gcc("wa-without-comma-is-warning", "-Wa"),
    # -Xclang values.
    gcc(
        "xclang-mllvm-skips-next",
        "-Xclang",
        "-mllvm",
        "-Xclang",
        "-instcombine-lower-dbg-declare=0",
    ),
    gcc("xclang-load-relative", "-Xclang", "-load", "-Xclang", "libFindBadConstructs.so"),
    gcc(
        "xclang-load-absolute",
        "-Xclang",
        "-load",
        "-Xclang",
        "/p.so",
        error=NR,
        message="clang abs path: /p.so",
    ),
    gcc("xclang-add-plugin", "-Xclang", "-add-plugin", "-Xclang", "find-bad-constructs"),
    gcc("xclang-plugin-arg", "-Xclang", "-plugin-arg-find-bad-constructs", "-Xclang", "check-ipc"),
    gcc("xclang-target-feature", "-Xclang", "-target-feature", "-Xclang", "+avx2"),
    gcc("xclang-debug-info-kind", "-Xclang", "-debug-info-kind=constructor"),
    gcc(
        "xclang-debug-info-kind-no-eq",
        "-Xclang",
        "-debug-info-kind",
        error=UF,
        message="-debug-info-kind",
    ),
    gcc("xclang-no-opaque-pointers", "-Xclang", "-no-opaque-pointers"),
    gcc("xclang-f-prefix", "-Xclang", "-fno-experimental-new-pass-manager"),
    gcc(
        "xclang-unknown",
        "-Xclang",
        "-emit-llvm",
        error=UF,
        message="unknown clang flag: -emit-llvm",
    ),
    gcc(
        "xclang-joined-path-checked-first",
        "-Xclang",
        "-I/inc",
        error=NR,
        message="abs path: -I/inc",
    ),
    gcc("xclang-dangling", "-c", "foo.c", "-Xclang"),
    # -mllvm values.
    gcc("mllvm-asan", "-mllvm", "-asan-globals=0"),
    gcc("mllvm-regalloc", "-mllvm", "-regalloc=pbqp"),
    gcc("mllvm-pbqp", "-mllvm", "-pbqp-coalescing"),
    gcc("mllvm-instcombine", "-mllvm", "-instcombine-lower-dbg-declare=0"),
    gcc("mllvm-basic-aa", "-mllvm", "-basic-aa-recphi=0"),
    gcc("mllvm-sanitizer-coverage", "-mllvm", "-sanitizer-coverage-prune-blocks=1"),
    gcc("mllvm-enable-dse-memoryssa", "-mllvm", "-enable-dse-memoryssa=true"),
    gcc("mllvm-enable-ml-inliner", "-mllvm", "-enable-ml-inliner=release"),
    gcc("mllvm-limited-coverage", "-mllvm", "-limited-coverage-experimental=true"),
    gcc("mllvm-training-log-relative", "-mllvm", "-training-log=./log"),
    gcc(
        "mllvm-training-log-absolute",
        "-mllvm",
        "-training-log=/l",
        error=NR,
        message="llvm abs path",
    ),
    gcc("mllvm-model-relative", "-mllvm", "-ml-inliner-model-under-training=model"),
    gcc(
        "mllvm-model-absolute",
        "-mllvm",
        "-ml-inliner-model-under-training=/m",
        error=NR,
        message="llvm abs path: -ml-inliner-model-under-training=/m",
    ),
    gcc("mllvm-unknown", "-mllvm", "-inline-threshold=100", error=UF, message="unknown llvm flag"),
    gcc("mllvm-twice", "-mllvm", "-asan-stack=0", "-mllvm", "-regalloc=greedy"),
    # Accepted prefixes and exact flags.
    gcc("accepted-prefixes-w-d-u-o", "-w", "-Wall", "-Wno-unused", "-DFOO=1", "-UBAR", "-O2"),
    gcc(
        "accepted-prefixes-f-m-no-std",
        "-fPIC",
        "-m64",
        "-march=x86-64",
        "-nostdinc++",
        "-std=c++17",
    ),
    gcc(
        "accepted-prefixes-double-dash",
        "--param=ssp-buffer-size=4",
        "--rtlib=compiler-rt",
        "--unwindlib=libunwind",
        "--target=x86_64-linux-gnu",
    ),
    gcc("accepted-f-prefix-is-unchecked", "-fdebug-prefix-map=/src=."),
    gcc("accepted-arch-and-target", "-arch", "arm64", "-target", "aarch64-linux-gnu"),
    gcc(
        "accepted-exact-flags",
        "-integrated-as",
        "-pedantic",
        "-pipe",
        "-pie",
        "-pthread",
        "-c",
        "-MMD",
        "-MD",
        "-M",
        "-Qunused-arguments",
        "-static-libgcc",
    ),
    # Unknown flags.
    gcc("unknown-MT", "-MT", "foo.o", error=UF, message="unknown flag: -MT"),
    gcc("unknown-TP", "-TP", error=UF, message="unknown flag: -TP"),
    gcc("unknown-static", "-static", error=UF, message="unknown flag: -static"),
    gcc("unknown-x-language", "-x", "c++", error=UF, message="unknown flag: -x"),
    gcc("unknown-stdin-dash", "-", error=UF, message="unknown flag: -"),
    # Inputs and argv[0].
    gcc("absolute-input", "-c", "/src/foo.c", error=NR, message="abs path: /src/foo.c"),
    Case(
        "absolute-argv0",
        ("/usr/bin/clang", "-c", "foo.c"),
        error=NR,
        message="abs path: /usr/bin/clang",
    ),
    # Environment.
    gcc("env-pwd-ignored", "-c", "foo.c", env=("PWD=/home/user/src",)),
    gcc("env-relative-values", "-c", "foo.c", env=("LANG=C", "EMPTY=", "DIR=out/gen")),
    gcc(
        "env-absolute-value",
        env=("HOME=/home/user",),
        error=NR,
        message="abs path in env HOME=/home/user",
    ),
    gcc("env-without-equals", env=("FOO",), error=NR, message="bad environment variable: FOO"),
    gcc("env-value-with-equals", env=("FLAGS=-DX=/y",)),
    # Windows path style for gcc-style compilers.
    gcc("windows-posix-path-is-relative", "-I/usr/include", "-c", "foo.c", windows=True),
    gcc(
        "windows-drive-path-joined",
        "-IC:\\include",
        windows=True,
        error=NR,
        message="abs path: -IC:",
    ),
    gcc(
        "windows-drive-input",
        "C:/src/foo.c",
        windows=True,
        error=NR,
        message="abs path: C:/src/foo.c",
    ),
    gcc("windows-drive-relative-input", "C:foo.c", "\\src\\foo.c", windows=True),
    gcc(
        "windows-env-drive",
        env=("INCLUDE=C:\\inc",),
        windows=True,
        error=NR,
        message="abs path in env",
    ),
]

CLANGCL_CASES: list[Case] = [
    clangcl("plain-compile", "/nologo", "/c", "foo.cc", "/Fofoo.obj"),
    clangcl("relative-input-backslash", "/c", "..\\src\\foo.cc"),
    clangcl(
        "absolute-input", "/c", "C:\\src\\foo.cc", error=NR, message="abs path: C:\\src\\foo.cc"
    ),
    Case(
        "absolute-argv0",
        ("C:\\llvm\\bin\\clang-cl.exe", "/c", "foo.cc"),
        windows=True,
        error=NR,
        message="abs path: C:\\llvm",
    ),
    Case(
        "posix-absolute-argv0-unknown-flag",
        ("/usr/bin/clang-cl", "/c", "foo.cc"),
        error=UF,
        message="unknown flag: /usr/bin/clang-cl",
    ),
    clangcl(
        "posix-style-joined-absolute", "-I/usr/include", windows=False, error=NR, message="abs path"
    ),
    # Joined path flags.
    clangcl(
        "msvc-joined-relative",
        "/FAcs",
        "/FIpch.h",
        "/FRfoo.sbr",
        "/FUmod.dll",
        "/Faout\\",
        "/Fdfoo.pdb",
        "/Fefoo.exe",
        "/Flfoo.lst",
        "/Fmfoo.map",
        "/Fpfoo.pch",
        "/Frfoo.sbr",
        "/Fxfoo",
    ),
    clangcl("Fo-absolute", "/FoC:\\out\\foo.obj", error=NR, message="abs path: /FoC:"),
    clangcl("FI-absolute", "/FIC:\\pch.h", error=NR, message="abs path: /FIC:\\pch.h"),
    clangcl("Fd-absolute", "/FdC:/out/foo.pdb", error=NR, message="abs path: /FdC:"),
    clangcl("Fo-alone-unknown", "/Fo", "foo.obj", error=UF, message="unknown flag: /Fo"),
    clangcl("vctoolsdir-absolute", "/vctoolsdirC:\\vc", error=NR, message="abs path: /vctoolsdir"),
    clangcl(
        "winsdkdir-relative", "/winsdkdir..\\sdk", env=("LIB=C:\\lib",), error=NR, message="LIB"
    ),
    clangcl(
        "debug-dir-joined-absolute", "-fdebug-compilation-dir=C:\\s", error=NR, message="abs path"
    ),
    clangcl("isystem-joined-absolute", "-isystemD:\\inc", error=NR, message="abs path: -isystemD:"),
    clangcl("resource-dir-relative", "-resource-dir=..\\lib\\clang"),
    # /winsysroot and -imsvc skip the environment check.
    clangcl("winsysroot-relative-env-skipped", "/winsysroot..\\win", env=("INCLUDE=C:\\inc",)),
    clangcl("winsysroot-bad-env-skipped", "/winsysrootwin", env=("NOEQUALS",)),
    clangcl(
        "winsysroot-absolute", "/winsysrootC:\\win", error=NR, message="abs path: /winsysrootC:"
    ),
    clangcl("winsysroot-separate-unknown", "/winsysroot", "win", error=UF, message="/winsysroot"),
    clangcl("imsvc-relative-env-skipped", "-imsvcsdk\\include", env=("INCLUDE=C:\\inc",)),
    clangcl("imsvc-posix-path-relative", "-imsvc/sdk/include"),
    clangcl("imsvc-absolute", "-imsvcC:\\sdk", error=NR, message="abs path: -imsvcC:"),
    clangcl("imsvc-separate-unknown", "-imsvc", "sdk", error=UF, message="unknown flag: -imsvc"),
    # Environment.
    clangcl(
        "env-absolute-include",
        env=("INCLUDE=C:\\inc",),
        error=NR,
        message="abs path in env INCLUDE",
    ),
    clangcl("env-pwd-ignored", env=("PWD=C:\\src",)),
    clangcl("env-without-equals", env=("FOO",), error=NR, message="bad environment variable: FOO"),
    clangcl("env-posix-value-relative-on-windows", env=("TMP=/tmp",)),
    # MSVC flags.
    clangcl("fc-rejected", "/FC", error=NR, message="/FC"),
    clangcl(
        "msvc-general-flags", "/nologo", "/Brepro", "/Brepro-", "/FS", "/bigobj", "/utf-8", "/X"
    ),
    clangcl("msvc-debug-info-flags", "/Z7", "/Zi", "/ZI"),
    clangcl("msvc-runtime-flags", "/MD", "/MT", "/LD", "/MDd", "/MTd", "/LDd"),
    clangcl("msvc-source-type-flags", "/Tc", "/Tp", "/TC", "/TP"),
    clangcl("msvc-calling-convention-flags", "/Gd", "/Gr", "/Gv", "/Gz", "/Gr-"),
    clangcl(
        "msvc-codegen-flags", "/GR", "/GR-", "/GS", "/GS-", "/Gw", "/Gw-", "/GF", "/Gy", "/Gy-"
    ),
    clangcl("msvc-compile-flags", "/c", "/showIncludes", "foo.cc"),
    clangcl(
        "msvc-prefix-flags",
        "/DFOO=1",
        "/EHsc",
        "/Zc:inline",
        "/arch:AVX2",
        "/clang:-fno-color-diagnostics",
        "/guard:cf",
        "/guard:cf-",
        "/showIncludes:user",
        "/std:c++17",
    ),
    clangcl(
        "msvc-optimization-flags",
        "/O1",
        "/O2",
        "/Ob0",
        "/Ob1",
        "/Ob2",
        "/Ob3",
        "/Od",
        "/Og",
        "/Oi",
        "/Oi-",
        "/Os",
        "/Ot",
        "/Ox",
        "/Oy",
        "/Oy-",
    ),
    clangcl("msvc-unknown-optimization", "/O3", error=UF, message="unknown flag: /O3"),
    clangcl("msvc-unknown-flag", "/permissive-", error=UF, message="unknown flag: /permissive-"),
    # Warning flags.
    clangcl("warning-levels", "/w", "/W0", "/W1", "/W2", "/W3", "/W4", "/Wall", "/WX"),
    clangcl("warning-version", "/Wv", "/Wv:18"),
    clangcl(
        "warning-number-kinds",
        "/w14996",
        "/w24996",
        "/w34996",
        "/w44996",
        "/wd4996",
        "/we4996",
        "/wo4996",
    ),
    clangcl("warning-number-4000", "/wd4000"),
    clangcl("warning-number-5999", "/wd5999"),
    clangcl("warning-number-3999", "/wd3999", error=UF, message="unknown flag: /wd3999"),
    clangcl("warning-number-6000", "/wd6000", error=UF, message="unknown flag: /wd6000"),
    clangcl("warning-number-short", "/wd400", error=UF, message="unknown flag: /wd400"),
    clangcl("warning-number-bad-kind", "/wx4996", error=UF, message="unknown flag: /wx4996"),
    clangcl("warning-number-not-digits", "/wd49a6", error=UF, message="unknown flag: /wd49a6"),
    clangcl("warning-WX-minus-unknown", "/WX-", error=UF, message="unknown flag: /WX-"),
    # Clang-style flags accepted by clang-cl.
    clangcl(
        "clang-accepted-prefixes",
        "-w",
        "-Wno-unused",
        "-DFOO",
        "-UBAR",
        "-O2",
        "-fcolor-diagnostics",
        "-m64",
        "-nostdinc",
        "-std=c++17",
        "--param=ssp-buffer-size=4",
        "--target=x86_64-pc-windows-msvc",
    ),
    clangcl(
        "clang-accepted-exact",
        "-arch",
        "x86_64",
        "-integrated-as",
        "-pedantic",
        "-pipe",
        "-pthread",
        "-c",
        "-MMD",
        "-MD",
        "-M",
        "-Qunused-arguments",
    ),
    clangcl(
        "target-separate-unknown", "-target", "x86_64-pc-windows-msvc", error=UF, message="-target"
    ),
    clangcl("pie-unknown", "-pie", error=UF, message="unknown flag: -pie"),
    clangcl("rtlib-unknown", "--rtlib=compiler-rt", error=UF, message="unknown flag: --rtlib"),
    clangcl("debug-without-dir-accepted", "-gcodeview", "-gline-tables-only", "/c", "foo.cc"),
    clangcl(
        "separate-path-relative", "-o", "foo.obj", "-I", "inc", "-isystem", "sys", "-MF", "foo.d"
    ),
    clangcl("separate-path-include-isysroot", "-include", "pch.h", "-isysroot", "sdk", "-B", "bin"),
    clangcl("separate-o-absolute", "-o", "C:\\out\\foo.obj", error=NR, message="abs path: C:\\out"),
    clangcl("separate-I-absolute", "-I", "c:/inc", error=NR, message="abs path: c:/inc"),
    clangcl("MF-joined-unknown", "-MFfoo.d", error=UF, message="unknown flag: -MFfoo.d"),
    clangcl(
        "iframework-unknown", "-iframework", "F", error=UF, message="unknown flag: -iframework"
    ),
    # A separate -fdebug-compilation-dir is a plain -f flag, so its value is an input.
    clangcl("debug-dir-separate-relative", "-fdebug-compilation-dir", "."),
    clangcl(
        "debug-dir-separate-absolute",
        "-fdebug-compilation-dir",
        "C:\\s",
        error=NR,
        message="abs path: C:\\s",
    ),
    # -Xclang values.
    clangcl("xclang-debug-dir-relative", "-Xclang", "-fdebug-compilation-dir", "-Xclang", "."),
    clangcl(
        "xclang-debug-dir-absolute",
        "-Xclang",
        "-fdebug-compilation-dir",
        "-Xclang",
        "C:\\src",
        error=NR,
        message="clang-cl abs path: C:\\src",
    ),
    clangcl(
        "xclang-debug-dir-joined-keeps-subcommand",
        "-Xclang",
        "-fdebug-compilation-dir=.",
        "/c",
        error=UF,
        message="unknown clang-cl flag: /c",
    ),
    clangcl("xclang-debug-info-kind", "-Xclang", "-debug-info-kind=constructor"),
    clangcl("xclang-debug-info-kind-no-eq", "-Xclang", "-debug-info-kind"),
    clangcl("xclang-add-plugin", "-Xclang", "-add-plugin", "-Xclang", "find-bad-constructs"),
    clangcl(
        "xclang-plugin-arg", "-Xclang", "-plugin-arg-find-bad-constructs", "-Xclang", "check-ipc"
    ),
    clangcl("xclang-mllvm-skips-next", "-Xclang", "-mllvm", "-Xclang", "-anything"),
    clangcl("xclang-no-opaque-pointers", "-Xclang", "-no-opaque-pointers"),
    clangcl("xclang-f-prefix", "-Xclang", "-fno-inline"),
    clangcl(
        "xclang-load-unknown",
        "-Xclang",
        "-load",
        "-Xclang",
        "p.dll",
        error=UF,
        message="clang-cl flag: -load",
    ),
    clangcl(
        "xclang-target-feature-unknown",
        "-Xclang",
        "-target-feature",
        error=UF,
        message="-target-feature",
    ),
    # -mllvm values and sub-tool flags.
    clangcl("mllvm-asan", "-mllvm", "-asan-globals=0"),
    clangcl(
        "mllvm-training-log-absolute",
        "-mllvm",
        "-training-log=C:\\l",
        error=NR,
        message="llvm abs path",
    ),
    clangcl(
        "mllvm-unknown", "-mllvm", "-inline-threshold=9", error=UF, message="unknown llvm flag"
    ),
    clangcl(
        "wa-plain-error", "-Wa,--fatal-warnings", error=NR, message="unsupported subcommand args as"
    ),
    clangcl("wl-plain-error", "-Wl,/debug", error=NR, message="unsupported subcommand args ld"),
]

GCC_CASE_IDS = [case.id for case in GCC_CASES]
CLANGCL_CASE_IDS = [case.id for case in CLANGCL_CASES]


def assert_outcome(case: Case, raised: NotRelocatable | None) -> None:
    """Compare the exception raised for ``case`` (or None) with its expected outcome."""
    if case.error is None:
        assert raised is None, f"expected relocatable, got {type(raised).__name__}: {raised}"
        return

    assert raised is not None, f"expected {case.error.__name__}, got relocatable"
    assert type(raised) is case.error, (
        f"expected {case.error.__name__}, got {type(raised).__name__}"
    )
    assert case.message in str(raised)


def run_check(case: Case, name: str) -> NotRelocatable | None:
    """Run the check for compiler ``name`` and return the exception it raised, if any."""
    try:
        check_relocatable(name, case.args, case.env, windows=case.windows)
    except NotRelocatable as exc:
        return exc
    return None


def test_case_tables_are_large_enough() -> None:
    """The tables hold at least 60 gcc/clang and 30 clang-cl command lines with unique ids."""
    assert len(GCC_CASES) >= 60
    assert len(CLANGCL_CASES) >= 30
    assert len(set(GCC_CASE_IDS)) == len(GCC_CASE_IDS)
    assert len(set(CLANGCL_CASE_IDS)) == len(CLANGCL_CASE_IDS)


@pytest.mark.parametrize("case", GCC_CASES, ids=GCC_CASE_IDS)
def test_gcc_relocatable_table(case: Case) -> None:
    """Each gcc/clang command line ends relocatable or with the expected error and message."""
    raised: NotRelocatable | None = None
    try:
        gcc_relocatable(case.args, case.env, windows=case.windows)
    except NotRelocatable as exc:
        raised = exc

    assert_outcome(case, raised)


@pytest.mark.parametrize("name", ["gcc", "g++", "clang", "clang++"])
@pytest.mark.parametrize("case", GCC_CASES, ids=GCC_CASE_IDS)
def test_check_relocatable_gcc_names(case: Case, name: str) -> None:
    """Every gcc-family compiler name applies the gcc/clang rules."""
    assert_outcome(case, run_check(case, name))


@pytest.mark.parametrize("case", CLANGCL_CASES, ids=CLANGCL_CASE_IDS)
def test_clangcl_relocatable_table(case: Case) -> None:
    """Each clang-cl command line ends relocatable or with the expected error and message."""
    raised: NotRelocatable | None = None
    try:
        clangcl_relocatable(case.args, case.env, windows=case.windows)
    except NotRelocatable as exc:
        raised = exc

    assert_outcome(case, raised)


@pytest.mark.parametrize("case", CLANGCL_CASES, ids=CLANGCL_CASE_IDS)
def test_check_relocatable_clangcl_name(case: Case) -> None:
    """The clang-cl compiler name applies the clang-cl rules."""
    assert_outcome(case, run_check(case, "clang-cl"))


@pytest.mark.parametrize(
    "args",
    [("javac", "/abs/Foo.java"), ("javac", "-unknown-flag"), ()],
    ids=["absolute-input", "unknown-flag", "empty"],
)
def test_check_relocatable_javac_always(args: tuple[str, ...]) -> None:
    """javac requests are relocatable whatever their arguments and environment."""
    check_relocatable("javac", args, ["HOME=/home/user", "NOEQUALS"])


@pytest.mark.parametrize(
    "name",
    ["cl.exe", "clang-tidy", "nacl-gcc", ""],
    ids=["cl-exe", "clang-tidy", "nacl-gcc", "empty"],
)
def test_check_relocatable_unknown_compiler(name: str) -> None:
    """A compiler name without a check is never relocatable, and not an unknown flag."""
    with pytest.raises(NotRelocatable) as info:
        check_relocatable(name, ["cc", "-c", "foo.c"], [])

    assert type(info.value) is NotRelocatable
    assert str(info.value) == f"no relocatable check for {name}"


def test_msvc_flag_depends_on_compiler() -> None:
    """An MSVC flag passes clang-cl but is an absolute input path to clang on POSIX."""
    args = ["compiler", "/nologo", "/c", "foo.cc"]

    check_relocatable("clang-cl", args, [])
    with pytest.raises(NotRelocatable, match="abs path: /nologo"):
        check_relocatable("clang", args, [])


@pytest.mark.parametrize(
    "prefixes",
    [GCC_PATH_FLAG_PREFIXES, CLANGCL_PATH_FLAG_PREFIXES],
    ids=["gcc", "clang-cl"],
)
def test_path_flag_prefixes_longest_first(prefixes: tuple[str, ...]) -> None:
    """Joined path-flag prefixes are ordered by non-increasing length."""
    lengths = [len(prefix) for prefix in prefixes]

    assert lengths == sorted(lengths, reverse=True)
    assert len(set(prefixes)) == len(prefixes)


@pytest.mark.parametrize(
    ("path", "windows", "expected"),
    [
        ("/usr/include", False, True),
        ("usr/include", False, False),
        ("C:\\src", False, False),
        ("", False, False),
        ("C:\\src", True, True),
        ("c:/src", True, True),
        ("C:src", True, False),
        ("\\src", True, False),
        ("/src", True, False),
        ("1:\\src", True, False),
        ("C:", True, False),
    ],
    ids=[
        "posix-root",
        "posix-relative",
        "posix-drive",
        "posix-empty",
        "windows-backslash",
        "windows-slash-lowercase",
        "windows-drive-relative",
        "windows-rooted-no-drive",
        "windows-posix-root",
        "windows-digit-drive",
        "windows-drive-only",
    ],
)
def test_is_absolute_styles(path: str, windows: bool, expected: bool) -> None:
    """A path is absolute by a leading slash on POSIX and by drive plus separator on Windows."""
    assert is_absolute(path, windows=windows) is expected


def test_unknown_flag_is_not_relocatable() -> None:
    """UnknownFlag is a kind of NotRelocatable, so callers can catch either."""
    assert issubclass(UnknownFlag, NotRelocatable)
