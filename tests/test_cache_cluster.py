"""The cache over redis-py's RedisCluster, against a real server in cluster mode."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster

from perfkit import RedisServerError
from perfkit.cache import MultiLayerCache, cached
from perfkit.simulation import RedisServer, find_redis_server_binary


@pytest.fixture(scope="module")
def cluster(redis_server_binary: str) -> Iterator[RedisCluster]:
    with (
        RedisServer(redis_server_binary, cluster=True) as server,
        server.cluster_client() as client,
    ):
        yield client


def test_the_read_path_invalidation_and_clear_work_on_a_cluster(cluster: RedisCluster) -> None:
    writer = MultiLayerCache(cluster, namespace="cluster")
    calls: list[str] = []

    @cached(writer, ttl=60)
    def answer(question: str) -> str:
        calls.append(question)
        return f"answer to {question}"

    assert answer("q") == "answer to q"
    reader = MultiLayerCache(cluster, namespace="cluster")
    assert cached(reader, ttl=60)(answer.__wrapped__)("q") == "answer to q"
    assert reader.stats()["l2_hits"] == 1
    assert answer.invalidate("q") is True
    writer.set("other", 1)
    writer.clear()
    fresh = MultiLayerCache(cluster, namespace="cluster")
    assert fresh.get("other", "gone") == "gone"
    assert calls == ["q"]
    assert writer.stats()["l2_errors"] == 0


def test_the_process_lock_works_on_a_cluster(cluster: RedisCluster) -> None:
    cache = MultiLayerCache(cluster, namespace="cluster-lock", lock_timeout=5)
    assert cache.acquire_lock("k", b"one") is True
    assert cache.acquire_lock("k", b"two") is False
    cache.release_lock("k", b"one")
    assert cache.acquire_lock("k", b"two") is True


def test_a_cluster_client_needs_a_cluster_server() -> None:
    with pytest.raises(RedisServerError, match="not a cluster node"):
        RedisServer(find_redis_server_binary() or "redis-server").cluster_client()


def test_a_cluster_node_gets_a_port_whose_bus_port_exists() -> None:
    from perfkit.simulation._redis import CLUSTER_BUS_OFFSET, _free_cluster_port

    ports = {_free_cluster_port() for _ in range(50)}
    assert all(port + CLUSTER_BUS_OFFSET <= 65535 for port in ports)
