"""The storage conformance suite on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hyperdock.errors import ConfigError, StoreConnectionError, StoreNotFound
from hyperdock.storage import Store, open_store
from hyperdock.testing.conformance import StoreConformance


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/store.db"

    @pytest.fixture
    def store(self, store_url: str) -> Iterator[Store]:
        s = open_store(store_url)
        yield s
        s.close()


def test_relative_and_bare_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///./a/rel.db").close()
    open_store("bare.db").close()
    assert (tmp_path / "a" / "rel.db").exists() and (tmp_path / "bare.db").exists()


def test_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreConnectionError, match="cannot"):
        open_store(f"sqlite:///{blocker}/sub/x.db")


@pytest.mark.parametrize("url", ["redis://x/1"])
def test_unsupported_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


def test_a_reader_never_creates_a_missing_store(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path}/sub/dir/x.db", str(tmp_path / "bare.db")):
        with pytest.raises(StoreNotFound, match=r"no store at .*run an experiment first"):
            open_store(url, create=False)
    assert list(tmp_path.iterdir()) == []
    open_store(f"sqlite:///{tmp_path}/made.db").close()
    open_store(f"sqlite:///{tmp_path}/made.db", create=False).close()  # exists: opens
