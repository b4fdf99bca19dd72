"""The local blob store against the blob store conformance suite (taskfabric.testing), and the
config's choice of the engine's store (`[storage] blob_root`, a URI `data_root`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfabric.config import Config, StorageConfig, load_config
from taskfabric.engine import Engine
from taskfabric.plugins import PluginError, Plugins, open_blob_store
from taskfabric.storage import BlobStore, LocalBlobStore
from taskfabric.testing import BlobStoreConformance


class TestLocalStoreConformance(BlobStoreConformance):
    @pytest.fixture
    def blob_store(self, tmp_path: Path) -> Iterator[BlobStore]:
        yield LocalBlobStore.from_root((tmp_path / "blobs").as_uri(), {})


def test_the_default_store_is_the_data_roots_blobs_folder(tmp_path: Path) -> None:
    config = Config(storage=StorageConfig(data_root=tmp_path, durable=True))
    assert config.blob_root == (tmp_path / "blobs").as_uri()
    store = open_blob_store(config, Plugins(autoload=False))
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "blobs"
    assert store.durable


def test_blob_root_names_the_store_and_data_root_keeps_the_local_files(tmp_path: Path) -> None:
    (tmp_path / "taskfabric.toml").write_text(
        f'[storage]\ndata_root = "local"\nblob_root = "{(tmp_path / "elsewhere").as_uri()}"\n'
    )
    config = load_config(tmp_path / "taskfabric.toml", env={})
    with Engine(config, plugins=Plugins(autoload=False)) as engine:
        assert isinstance(engine.store, LocalBlobStore)
        assert engine.store.root == tmp_path / "elsewhere"
        assert engine.work_root == tmp_path / "local" / "work"


def test_a_uri_data_root_is_the_blob_root(tmp_path: Path) -> None:
    storage = StorageConfig.model_validate({"data_root": "s3://bucket/prefix"})
    assert storage.blob_root == "s3://bucket/prefix"
    assert storage.data_root is None
    folder = StorageConfig.model_validate({"data_root": (tmp_path / "x").as_uri()})
    assert folder.data_root == tmp_path / "x"
    assert folder.blob_root is None


def test_the_data_root_variable_may_be_a_uri(tmp_path: Path) -> None:
    (tmp_path / "taskfabric.toml").write_text('[storage]\ndata_root = "local"\n')
    env = {"TASKFABRIC_DATA_ROOT": "s3://bucket/runs"}
    config = load_config(tmp_path / "taskfabric.toml", env=env)
    assert config.blob_root == "s3://bucket/runs"
    assert config.data_root == tmp_path / "local"
    # A folder replaces both: nothing of the run goes to the file's store.
    (tmp_path / "taskfabric.toml").write_text('[storage]\nblob_root = "s3://bucket/runs"\n')
    config = load_config(tmp_path / "taskfabric.toml", env={"TASKFABRIC_DATA_ROOT": "/tmp/x"})
    assert config.blob_root == "file:///tmp/x/blobs"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('blob_root = "bucket/prefix"', "is not a URI: write scheme://..."),
        ('blob_root = "s3://"', "names no bucket or host"),
        ('data_root = "s3://a/b"\nblob_root = "s3://c/d"', "set one of them"),
    ],
)
def test_bad_blob_roots_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "taskfabric.toml").write_text(f"[storage]\n{text}\n")
    with pytest.raises(Exception, match=message) as caught:
        load_config(tmp_path / "taskfabric.toml", env={})
    assert "storage" in str(caught.value)


def test_a_scheme_without_a_driver_says_what_to_install(tmp_path: Path) -> None:
    config = Config(storage=StorageConfig(data_root=tmp_path, blob_root="s3://bucket/p"))
    with pytest.raises(PluginError, match=r"unknown blob store driver 's3'.*taskfabric-aws"):
        open_blob_store(config, Plugins(autoload=False))


def test_options_the_driver_refuses_name_the_section(tmp_path: Path) -> None:
    config = Config(storage=StorageConfig(data_root=tmp_path, options={"endpoint_url": "x"}))
    with pytest.raises(PluginError, match=r"\[storage\].*'file' blob store.*'endpoint_url'"):
        open_blob_store(config, Plugins(autoload=False))
