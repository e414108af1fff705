"""Fixtures over :mod:`tests.initramfs.corpus`: one realistic tree per session, archives cached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.initramfs import corpus


@pytest.fixture(scope="session")
def corpus_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A realistic initramfs tree (see :func:`corpus.build_tree`), built once per session."""
    return corpus.build_tree(tmp_path_factory.mktemp("corpus") / "root")


@pytest.fixture(scope="session")
def peer_archive(corpus_tree: Path) -> Callable[[corpus.PeerTool], bytes]:
    """``peer_archive(tool)``: :data:`corpus_tree` archived by a real cpio, cached per tool."""
    cache: dict[str, bytes] = {}

    def make(tool: corpus.PeerTool) -> bytes:
        if tool not in cache:
            cache[tool] = corpus.peer_archive(corpus_tree, tool)
        return cache[tool]

    return make


@pytest.fixture(scope="session")
def peer_compress() -> Callable[[bytes, str], bytes]:
    """``peer_compress(data, name)``: ``data`` compressed by the real command-line tool."""
    return corpus.peer_compress


@pytest.fixture(scope="session")
def distro_image(corpus_tree: Path) -> Callable[..., corpus.DistroImage]:
    """``distro_image(compression=..., tool=...)``: an early microcode segment + a compressed
    main archive of :data:`corpus_tree`, cached per arguments."""
    cache: dict[tuple[object, ...], corpus.DistroImage] = {}

    def make(**kwargs: object) -> corpus.DistroImage:
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            cache[key] = corpus.distro_image(corpus_tree, **kwargs)  # type: ignore[arg-type]
        return cache[key]

    return make
