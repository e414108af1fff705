"""One exception hierarchy for bootmem.

Every exception derives from :class:`BootmemError`; where a built-in exception means the
same thing it is a second base (``OutOfMemoryError`` is a ``MemoryError``, ``TmpfsNotFoundError``
a ``FileNotFoundError``), so callers can catch either.  Messages are one line and carry the
value at fault: hex addresses, names with ``repr``, byte offsets into an image.  Where Linux
has wording for the same failure, the message reuses it.
"""

from __future__ import annotations

import errno


class BootmemError(Exception):
    """Root of every error bootmem raises on purpose."""


class UsageError(BootmemError, ValueError):
    """An argument that cannot be used: a size that does not parse, an unknown name."""


class WriteError(BootmemError, OSError):
    """Output could not be written (stdout on a full disk): ``"write error: <reason>"``."""


# --- mm -----------------------------------------------------------------------------------


class AllocatorError(BootmemError):
    """Misuse or exhaustion of the page allocator or the boot-time region lists."""


class InvalidRangeError(AllocatorError, ValueError):
    """A range that is empty (``end <= start``) or not inside the machine's RAM."""


class OutOfMemoryError(AllocatorError, MemoryError):
    """No free block of the requested order.

    ``runs`` holds the pages a bulk allocation took before it failed, as ``(pfn, npages)``: they
    stay allocated and belong to the caller (as ``BlockingIOError.characters_written`` tells
    what a partial write did).  Empty for a single allocation.
    """

    runs: list[tuple[int, int]]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.runs = []


class ReservedConflictError(AllocatorError):
    """A reservation that would cover pages already handed out by the allocator."""


class NotReservedError(AllocatorError):
    """``release_reserved`` of a range that is not wholly reserved."""


class RegionBusyError(AllocatorError):
    """A release refused because a lease on the range is still alive."""


class InvalidFreeError(AllocatorError, ValueError):
    """A free of a pfn that was never allocated at that order, is misaligned or is reserved."""


class DoubleFreeError(InvalidFreeError):
    """A free of a page that is already free."""


class InvariantError(AllocatorError, AssertionError):
    """``check_invariants`` found the allocator's books inconsistent."""


# --- device tree --------------------------------------------------------------------------


class FdtError(BootmemError, ValueError):
    """A device tree blob that is malformed or lacks what the handoff needs."""


# --- initramfs images -----------------------------------------------------------------------


class ImageError(BootmemError):
    """An initramfs image that cannot be read."""


class CpioError(ImageError, ValueError):
    """A malformed cpio archive: bad magic, bad header field, truncation."""


class ChecksumError(CpioError):
    """A ``070702`` (crc) entry whose data does not sum to ``c_check``: "bad data checksum"."""


class CompressionError(ImageError):
    """A compressed member that is corrupt, truncated or of an unknown kind."""


class DecompressorError(CompressionError):
    """A compressed member its decompressor refuses: corrupt, truncated, or not of its format.

    ``kernel_message`` is what Linux's decompressor for the format passes to ``error()`` for
    the same failure (``lib/decompress_*.c``), which ``init/initramfs.c`` then prints after
    "Initramfs unpacking failed: "; "decompressor failed" where the decompressor says nothing.
    """

    def __init__(self, message: str, kernel_message: str = "decompressor failed") -> None:
        super().__init__(message)
        self.kernel_message = kernel_message


class MissingCodecError(CompressionError, ImportError):
    """A compression whose Python package is not installed; the message names the package."""


class DecompressionBombError(CompressionError):
    """A member that expands past the configured cap on decompressed bytes."""


class ExtractError(BootmemError):
    """Extraction to a host directory refused or failed."""


class FilterError(ExtractError):
    """An extraction filter refused a member; ``member`` is the entry at fault."""

    def __init__(self, member: object, message: str) -> None:
        super().__init__(message)
        self.member = member


class AbsolutePathError(FilterError):
    """A member whose name is absolute after the filter's normalisation."""


class OutsideDestinationError(FilterError):
    """A member that would land outside the destination directory."""


class SpecialFileError(FilterError):
    """A device node, fifo or socket refused by the ``data`` filter."""


class AbsoluteLinkError(FilterError):
    """A symlink with an absolute target refused by the ``data`` filter."""


class LinkOutsideDestinationError(FilterError):
    """A symlink or hardlink whose target resolves outside the destination directory."""


# --- tmpfs ----------------------------------------------------------------------------------


class TmpfsError(BootmemError, OSError):
    """A filesystem operation in the model's tmpfs that failed, with an errno."""

    def __init__(self, err: int, message: str) -> None:
        OSError.__init__(self, err, message)


class TmpfsNotFoundError(TmpfsError, FileNotFoundError):
    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOENT, message)


class TmpfsNoSpaceError(TmpfsError):
    """A write past the tmpfs size limit, or with no page left to allocate (Linux: "write error")."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)


# --- boot -----------------------------------------------------------------------------------


class BootError(BootmemError):
    """A machine or handoff that cannot be booted at all (not an unpacking failure, which is logged)."""


# --- mm (leases) ----------------------------------------------------------------------------


class LeaseClosedError(AllocatorError, ValueError):
    """Use of a lease after ``close()``, or after ``release_reserved`` took its range back."""


# --- verify (a real kernel under QEMU) ------------------------------------------------------


class VerifyError(BootmemError):
    """The real-kernel harness cannot run: no kernel, no QEMU, no apt, a boot that timed out."""
