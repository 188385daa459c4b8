"""Local Redis Cluster and Sentinel deployments for the test-suite: real processes on free
loopback ports, in a temporary directory, stopped afterwards.

    cluster:  6 nodes (3 masters, 3 replicas) made with `redis-cli --cluster create`
    sentinel: 1 master, 2 replicas and 3 sentinels watching service `mymaster`
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.redis_servers import REDIS_SERVER, RedisServer, free_port, send_command, stop_all

REDIS_CLI = shutil.which("redis-cli")
SENTINEL_SERVICE = "mymaster"
PROJECT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Secured:
    """Start nodes exactly as compose.yaml does: redis/entrypoint.sh (redis.conf, ACL users
    from these passwords) and redis/sentinel.sh, instead of a bare redis-server."""

    admin_password: str
    app_password: str
    prefix: str

    @property
    def admin(self) -> tuple[str, str]:
        return ("admin", self.admin_password)

    def node(self, directory: Path, port: int, **environment: str) -> RedisServer:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "REDIS_CONF": str(PROJECT / "redis" / "redis.conf"),
            "REDIS_ACL_DIR": str(directory),
            "REDIS_KEY_PREFIX": self.prefix,
            "REDIS_APP_PASSWORD": self.app_password,
            "REDIS_ADMIN_PASSWORD": self.admin_password,
            **environment,
        }
        launcher = ("sh", str(PROJECT / "redis" / "entrypoint.sh"))
        return RedisServer(
            directory=directory, port=port, launcher=launcher, env=env, auth=self.admin
        )


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port < 55535 and _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def info_field(port: int, section: str, name: str, auth: tuple[str, str] | None = None) -> str:
    reply = send_command(port, "INFO", section, auth=auth).decode(errors="replace")
    for line in reply.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    return ""


@dataclass
class LocalCluster:
    directory: Path
    secured: Secured | None = None
    nodes: list[RedisServer] = field(default_factory=list)

    def start(self) -> LocalCluster:
        assert REDIS_CLI is not None
        for index in range(6):
            directory = self.directory / f"node{index}"
            directory.mkdir(parents=True)
            port = free_cluster_port()
            if self.secured:
                node = self.secured.node(directory, port, REDIS_CLUSTER="yes")
            else:
                node = RedisServer(
                    directory=directory,
                    port=port,
                    extra_args=(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000",
                    ),
                )  # fmt: skip
            self.nodes.append(node.start())
        login = ["--user", "admin"] if self.secured else []
        environment = dict(os.environ)
        if self.secured:
            environment["REDISCLI_AUTH"] = self.secured.admin_password
        subprocess.run(
            [REDIS_CLI, *login, "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60, env=environment,
        )  # fmt: skip
        self.wait_until_ok()
        return self

    def wait_until_ok(self, timeout: float = 30) -> None:
        live = [node for node in self.nodes if node.process and node.process.poll() is None]
        wait_for(
            lambda: (
                all(info_cluster_state(node.port, node.auth) == "ok" for node in live)
                and len(self.masters()) == 3
            ),
            "cluster_state:ok",
            timeout,
        )

    def masters(self) -> list[RedisServer]:
        return [
            node
            for node in self.nodes
            if node.process
            and node.process.poll() is None
            and info_field(node.port, "replication", "role", node.auth) == "master"
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    def stop(self) -> None:
        stop_all(self.nodes)


def wait_replicated(master: RedisServer, replicas: int, timeout: float = 15) -> None:
    """Until `replicas` replicas of this master have everything it had written when called.

    The target is read once: sentinels' hellos and the hubs' probes go on writing, and the
    offsets replicas acknowledge (once a second) would rarely reach a target read anew."""

    def replication() -> dict[str, str]:
        raw = send_command(master.port, "INFO", "replication", auth=master.auth)
        reply = raw.decode(errors="replace")
        return dict(line.split(":", 1) for line in reply.splitlines() if ":" in line)

    target = int(replication().get("master_repl_offset", "0"))

    def caught_up() -> bool:
        offsets = [
            int(value.split("offset=")[1].split(",")[0])
            for name, value in replication().items()
            if name.startswith("slave") and "state=online" in value
        ]
        return len([offset for offset in offsets if offset >= target]) >= replicas

    wait_for(caught_up, f"{replicas} replica(s) of port {master.port} to catch up", timeout)


def resp_fields(reply: bytes) -> dict[str, str]:
    """A flat RESP array of bulk strings (name, value, name, value, ...) as a dict."""
    items = [
        line
        for line in reply.decode(errors="replace").split("\r\n")
        if line and not line.startswith(("*", "$"))
    ]
    return dict(zip(items[::2], items[1::2], strict=False))


def info_cluster_state(port: int, auth: tuple[str, str] | None = None) -> str:
    reply = send_command(port, "CLUSTER", "INFO", auth=auth).decode(errors="replace")
    for line in reply.splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""


@dataclass
class LocalSentinelSet:
    directory: Path
    secured: Secured | None = None
    data_nodes: list[RedisServer] = field(default_factory=list)
    sentinels: list[RedisServer] = field(default_factory=list)

    def _data_node(self, name: str, replica_of: int | None) -> RedisServer:
        directory = self.directory / name
        directory.mkdir(parents=True)
        if self.secured:
            extra = {"REDIS_REPLICA_OF": f"127.0.0.1 {replica_of}"} if replica_of else {}
            return self.secured.node(directory, free_port(), **extra)
        args = ("--replicaof", "127.0.0.1", str(replica_of)) if replica_of else ()
        return RedisServer(directory=directory, extra_args=args)

    def _sentinel(self, directory: Path, master_port: int) -> RedisServer:
        directory.mkdir(parents=True)
        if self.secured:
            port = free_port()
            env = {
                "PATH": os.environ.get("PATH", ""),
                "REDIS_ADMIN_PASSWORD": self.secured.admin_password,
                "REDIS_MASTER_HOST": "127.0.0.1",
                "REDIS_MASTER_PORT": str(master_port),
                "SENTINEL_PORT": str(port),
                "SENTINEL_DIR": str(directory),
            }
            launcher = ("sh", str(PROJECT / "redis" / "sentinel.sh"))
            return RedisServer(directory=directory, port=port, launcher=launcher, env=env)
        conf = directory / "sentinel.conf"  # sentinels rewrite it: a file of their own
        # 2.5 s, not less: on a busy machine, sentinels with 1 s took a just-promoted master
        # for dead before their first PING came back, and promoted a second replica, leaving
        # the first a master for seconds, taking writes that were then thrown away.
        conf.write_text(
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 2500\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n"
            f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
        )
        return SentinelProcess(directory=directory, conf=conf)

    def start(self) -> LocalSentinelSet:
        master = self._data_node("master", None).start()
        self.data_nodes.append(master)
        for index in range(2):
            self.data_nodes.append(self._data_node(f"replica{index}", master.port).start())
        for index in range(3):
            self.sentinels.append(
                self._sentinel(self.directory / f"sentinel{index}", master.port).start()
            )
        wait_for(self._settled, "sentinels to see the master, both replicas and each other")
        return self

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            reply = send_command(sentinel.port, "SENTINEL", "MASTER", SENTINEL_SERVICE)
            fields = resp_fields(reply)
            if fields.get("num-slaves") != "2" or fields.get("num-other-sentinels") != "2":
                return False
        return all(
            info_field(node.port, "replication", "master_link_status", node.auth) == "up"
            for node in self.data_nodes[1:]
        )

    def master_port(self) -> int:
        reply = send_command(
            self.sentinels[0].port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE
        )
        return int(reply.decode().split("\r\n")[-2])

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(node for node in self.data_nodes if node.port == port)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels]

    def stop(self) -> None:
        stop_all([*self.sentinels, *self.data_nodes])


@dataclass
class SentinelProcess(RedisServer):
    conf: Path = Path()

    def command(self) -> list[str]:
        assert REDIS_SERVER is not None
        return [
            REDIS_SERVER, str(self.conf), "--sentinel",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
