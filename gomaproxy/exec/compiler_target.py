"""Normalization of compiler targets, the way goma servers compare them."""

from __future__ import annotations

# Last target tokens that name the environment (ABI) rather than the OS.
TARGET_ENVIRONMENTS = frozenset(
    {"eabi", "gnu", "gnueabi", "gnueabihf", "macho", "android", "androideabi", "uclibc", "msvc"}
)


class InvalidTarget(ValueError):
    """A compiler target that is not ``arch-[vendor-]os[-environment]``."""


def normalize_target(name: str, target: str) -> str:
    """Return the canonical form of a compiler target, the way goma servers compare them.

    The target splits at ``-`` into 2 to 4 tokens: the architecture, then the vendor
    and OS (or only the OS), then an environment if the last token is one.  The result
    keeps the architecture (``iN86`` becomes ``i686`` and ``amd64`` becomes
    ``x86_64``), the vendor only if it is ``cros``, the OS (``darwin`` for any Apple
    ``darwin*``), and the environment unless it is ``gnu``.  Empty and ``java``
    targets, and every target of ``cl.exe``, are returned unchanged.

    Raises:
        InvalidTarget: the target has too few or too many tokens.
    """
    if target in ("", "java") or name == "cl.exe":
        return target

    tokens = target.split("-")
    if not 2 <= len(tokens) <= 4:
        raise InvalidTarget(f"target {target!r} does not have 2 to 4 '-'-separated parts")

    arch, rest = _arch_type(tokens[0]), tokens[1:]
    environment = ""
    if rest[-1] in TARGET_ENVIRONMENTS:
        environment = rest.pop()
    if len(rest) > 2:
        raise InvalidTarget(f"target {target!r} has more than vendor and OS after {tokens[0]!r}")

    vendor, os_name = "", ""
    if len(rest) == 2:
        vendor, os_name = rest
    elif len(rest) == 1:
        os_name = rest[0]

    parts = [arch]
    if vendor == "cros":
        parts.append(vendor)
    if vendor == "apple" and os_name.startswith("darwin"):
        parts.append("darwin")
    elif os_name:
        parts.append(os_name)
    if environment and environment != "gnu":
        parts.append(environment)
    return "-".join(parts)


def _arch_type(arch: str) -> str:
    if len(arch) == 4 and arch[0] == "i" and arch[1].isdigit() and arch[2:] == "86":
        return "i686"
    if arch == "amd64":
        return "x86_64"
    return arch
