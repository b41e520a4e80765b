"""The prepared-data cache: an ImageFolder split decoded once, read by every cell of a study.

Decoding JPEGs costs far more CPU than training AlexNet on a GPU can wait for, and every cell of
a study would repeat it every epoch. A store holds one split at one stored size, decoded exactly
as the direct path decodes it. One module per job:

* :mod:`.manifest`: the on-disk format, the manifest, the content digest, the up-to-date rule;
* :mod:`.reader`: opening a store (with a reader lease) and gathering its rows;
* :mod:`.builder`: building a store (parallel decode, digest, atomic rename);
* :mod:`.maintenance`: superseded stores and leftovers, ``data-gc``, ``data-info``;
* :mod:`.locks`: the build lock and the reader lease.
"""

from .builder import build_store, ensure_store
from .maintenance import collect_garbage, describe, find_garbage, garbage_report
from .manifest import IMAGES, LEASE, MANIFEST, SUPERSEDED, VERSION, read_manifest
from .reader import ImageStore, JpegRows, RawRows

__all__ = [
    "IMAGES",
    "LEASE",
    "MANIFEST",
    "SUPERSEDED",
    "VERSION",
    "ImageStore",
    "JpegRows",
    "RawRows",
    "build_store",
    "collect_garbage",
    "describe",
    "ensure_store",
    "find_garbage",
    "garbage_report",
    "read_manifest",
]
