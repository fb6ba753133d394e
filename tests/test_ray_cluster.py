"""Multi-node Ray: a head node and two worker nodes on this machine, each its own raylet with its
own CPU, joined by `compose --engine ray --ray-address`. The shards, their stats files and the
manifest are the bytes of a local one-worker run, and the cluster's own record of the run (the
task events Ray keeps in its control store, GCS) shows the shard tasks ran on both worker nodes.
With an `s3://` output (moto's S3 server on loopback, see test_s3.py) each worker node stages
its shards in its own folder, as on machines that share nothing but the bucket; with an `s3://`
image store that the driver staged and then moved out of sight, each worker node stages the
store itself.

The cluster lives on 127.0.0.1 and under a private temp folder, so it neither leaves the loopback
interface nor becomes the "current cluster" that a bare `ray.init()` elsewhere would join."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
from ray._private import ray_constants
from ray.cluster_utils import Cluster

from compose import engine, storage
from tests.corpus import write_mmdu45k
from tests.processes import invoke_json as invoke
from tests.test_s3 import BUCKET, digests, remote_files, s3_endpoint

WORKER_NODES = 2
# No fixed port: another Ray instance on this machine must not collide with this one.
HEAD = {"num_cpus": 0, "include_dashboard": False, "dashboard_agent_listen_port": None}


@dataclass(frozen=True, slots=True, kw_only=True)
class Nodes:
    cluster: Cluster
    stages: dict[str, Path]  # worker node id -> its own COMPOSE_STAGE (its "local disk")
    driver_stage: Path
    s3: object  # the s3fs file system of the bucket every node reaches


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """A head with no CPU (it only hosts the control store and the driver's raylet, as on a real
    cluster) and worker nodes of one CPU each, so tasks must leave the driver's node. Nodes
    inherit this process's environment (the S3 endpoint and credentials) when they start."""
    root = tmp_path_factory.mktemp("nodes")
    private = tempfile.mkdtemp(prefix="rc")  # short: Ray's socket paths live under it
    try:
        with pytest.MonkeyPatch.context() as patch, s3_endpoint(patch, root) as (_, fs):
            patch.setenv("RAY_TMPDIR", private)  # the session and ray_current_cluster stay ours
            patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # every node on 127.0.0.1
            patch.setenv(storage.STAGE_ENV, str(root / "driver"))
            cluster = Cluster(initialize_head=True, head_node_args=HEAD)
            try:
                stages = {}
                for number in range(WORKER_NODES):
                    stage = root / f"node{number}"
                    node = cluster.add_node(num_cpus=1, env_vars={storage.STAGE_ENV: str(stage)})
                    stages[node.node_id] = stage
                cluster.wait_for_nodes()
                yield Nodes(cluster=cluster, stages=stages, driver_stage=root / "driver", s3=fs)
            finally:
                if ray.is_initialized():
                    ray.shutdown()
                cluster.shutdown()
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(nodes):
    return nodes.cluster


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    return write_mmdu45k(root, 60, seed=5, zip=True)


def args(corpus, out: Path | str, *extra: str) -> list[str]:
    return [
        "--source", str(corpus.source), "--images", str(corpus.images), "--out", str(out),
        "--tokens", "2k", "--max-images", "24", "--image-tokens", "fixed:64", "--seed", "3",
        "--shard-size", "1", "--quiet", "--json", *extra,
    ]  # fmt: skip


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def task_nodes(cluster: Cluster) -> dict[str, dict[str, set[str]]]:
    """Per job, each `write_task` task and the nodes Ray leased it to, from the task events in
    GCS. The owner (the driver) records the node when the lease is granted and flushes its
    events when it disconnects, so they are complete once `compose` has returned.
    (`ray.util.state.list_tasks` reads the same events, but through the dashboard, which needs
    `ray[default]`.)"""
    placed: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for event in cluster.global_state._get_all_task_events():
        if event.task_info.name != "write_task":
            continue
        nodes = placed[event.job_id.hex()][event.task_id.hex()]
        nodes.update(u.node_id.hex() for u in [event.state_updates] if u.node_id)
    return placed


@pytest.fixture(scope="module")
def local_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, invoke(args(corpus, out, "--workers", "1"))


@pytest.fixture(scope="module")
def cluster_run(cluster, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("on-cluster")
    before = set(task_nodes(cluster))
    record = invoke(args(corpus, out, "--engine", "ray", "--ray-address", cluster.address))
    jobs = {job: tasks for job, tasks in task_nodes(cluster).items() if job not in before}
    return out, record, jobs


def test_the_cluster_has_separate_nodes_with_their_own_cpus(cluster):
    nodes = [n for n in cluster.global_state.node_table() if n["Alive"]]
    assert len(nodes) == 1 + WORKER_NODES
    assert len({n["NodeManagerAddress"] for n in nodes}) == 1  # one machine: 127.0.0.1
    assert len({n["NodeManagerPort"] for n in nodes}) == 1 + WORKER_NODES  # separate raylets
    assert sorted(n["Resources"].get("CPU", 0) for n in nodes) == [0, 1, 1]


def test_a_multi_node_run_gives_the_local_bytes(local_run, cluster_run):
    local, local_record = local_run
    out, record, _ = cluster_run
    assert record["summary"]["samples"] == local_record["summary"]["samples"] > 8
    assert record["summary"]["shards"] == local_record["summary"]["shards"] > 8
    assert digests(files(out)) == digests(files(local))
    assert len(digests(files(out))) == 2 * record["summary"]["shards"] + 1
    assert (out / "run.json").exists()  # the run completed: run.json is written last


def test_shard_tasks_ran_on_every_worker_node_and_never_on_the_head(cluster, cluster_run):
    _, record, jobs = cluster_run
    assert len(jobs) == 1  # the compose run is one Ray job (one driver)
    (tasks,) = jobs.values()
    assert len(tasks) == record["summary"]["shards"]  # one task per shard, none retried
    assert all(len(nodes) == 1 for nodes in tasks.values())  # each ran once, on one node
    used = set().union(*tasks.values())
    workers = {node.node_id for node in cluster.worker_nodes}
    assert used == workers  # every worker node ran shards
    assert cluster.head_node.node_id not in used  # the head has no CPU to run them


def test_a_rerun_on_the_cluster_keeps_every_shard(cluster, corpus, cluster_run):
    out, record, _ = cluster_run
    expected = digests(files(out))
    again = invoke(args(corpus, out, "--engine", "ray", "--ray-address", cluster.address))
    assert again["summary"]["skipped_shards"] == record["summary"]["shards"]
    assert digests(files(out)) == expected


def test_worker_nodes_write_to_s3_through_their_own_disks(nodes, corpus, local_run):
    local, local_record = local_run
    out = f"s3://{BUCKET}/on-cluster"
    address = nodes.cluster.address
    record = invoke(args(corpus, out, "--engine", "ray", "--ray-address", address))
    assert record["summary"]["shards"] == local_record["summary"]["shards"]
    assert digests(remote_files(nodes.s3, out)) == digests(files(local))
    staged = storage.workspace(out).name  # the stage folder a URL gets on every node
    wrote = {node for node, stage in nodes.stages.items() if (stage / staged / "shards").is_dir()}
    assert wrote == set(nodes.stages)  # every worker node wrote shards on its own disk...
    assert not [p for s in nodes.stages.values() for p in (s / staged / "shards").iterdir()]
    assert not (nodes.driver_stage / staged / "shards").exists()  # ...and the driver none


def test_worker_nodes_stage_an_s3_image_store_they_cannot_see_on_the_driver(
    nodes, corpus, local_run, tmp_path, monkeypatch
):
    """`--images s3://...`: the driver stages the zip into OUT/inputs, ingests and plans from it;
    once the first task names it, the driver's copy is moved away, so no worker can open it at
    the driver's path (as on another machine). Each worker node stages the zip itself, into its
    own COMPOSE_STAGE, and the shards are a local run's bytes."""
    local, local_record = local_run
    url = f"s3://{BUCKET}/corpus/{corpus.images.name}"
    nodes.s3.put_file(str(corpus.images), url)
    hidden: list[Path] = []
    cut = engine.shard_tasks

    def cut_then_hide(*arguments, **options):
        tasks = cut(*arguments, **options)
        first = next(tasks)
        (store,) = first.stores
        assert isinstance(store, storage.Staged) and store.url == url
        copy = Path(store.path)
        copy.parent.rename(tmp_path / "moved-away")  # the zip and its marker
        hidden.append(copy)
        yield first
        yield from tasks

    monkeypatch.setattr(engine, "shard_tasks", cut_then_hide)
    out = tmp_path / "out"
    arguments = args(corpus, out, "--engine", "ray", "--ray-address", nodes.cluster.address)
    arguments[arguments.index("--images") + 1] = url
    before = set(task_nodes(nodes.cluster))
    record = invoke(arguments)
    (tasks,) = [t for job, t in task_nodes(nodes.cluster).items() if job not in before]
    ran = set().union(*tasks.values())  # the worker nodes Ray leased this run's shards to
    (copy,) = hidden
    assert copy.is_relative_to(out / "inputs") and not copy.exists()
    assert record["summary"]["shards"] == local_record["summary"]["shards"]
    assert digests(files(out)) == digests(files(local))
    assert ran and ran <= set(nodes.stages)
    # Ray usually leases shards to both worker nodes, but may leave one idle (it did in
    # 2 of 9 runs here): each node that ran a shard staged the store once, any other none.
    for node, stage in nodes.stages.items():
        staged = list((stage / "inputs").glob(f"*/{corpus.images.name}"))
        assert len(staged) == (node in ran)
        assert all(copy.read_bytes() == corpus.images.read_bytes() for copy in staged)
    assert not (nodes.driver_stage / "inputs").exists()
