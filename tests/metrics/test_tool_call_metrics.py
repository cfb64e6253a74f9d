"""ToolCallMetrics: accumulating over batches equals the functional twin, and DDP (gloo) sync gives the same."""

import pytest
from helpers import shared_data

from tl_lightning.data.loaders import load_source
from tl_lightning.format.call_format import join_rendered, render_calls
from tl_lightning.metrics.tool_call import ToolCallMetrics, tool_call_metrics
from tl_lightning.rewards.taxonomy import CATEGORIES, golds_for


def _rotbench(level):
    return list(load_source("rotbench", shared_data("rotbench", "Data", "First_Turn", f"{level}.json")))


def test_metric_accumulates_like_functional():
    convs = _rotbench("slight")
    preds = [join_rendered(render_calls(c.gold[-1])) if i % 3 else "bad output(" for i, c in enumerate(convs)]
    golds, tools = [golds_for(c) for c in convs], [c.tools for c in convs]
    m = ToolCallMetrics()
    for i in range(0, len(convs), 17):
        m.update(preds[i:i + 17], golds[i:i + 17], tools[i:i + 17])
    acc = {k: float(v) for k, v in m.compute().items()}
    assert acc == pytest.approx(tool_call_metrics(preds, golds, tools))
    assert acc["ts"] >= acc["pi"] >= acc["cf"] and abs(sum(acc[f"rate/{c}"] for c in CATEGORIES) - 1) < 1e-9
    m.reset()
    assert float(m.total) == 0


def _ddp_worker(rank, world, port, preds, golds, tools, out):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    m = ToolCallMetrics()
    m.update(preds[rank::world], golds[rank::world], tools[rank::world])
    res = {k: float(v) for k, v in m.compute().items()}
    if rank == 0:
        out.put(res)
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_gloo_sync_matches_functional():
    import socket

    import torch.multiprocessing as mp

    convs = _rotbench("clean")[:40]
    preds = [join_rendered(render_calls(c.gold[0])) if i % 2 else "x(" for i, c in enumerate(convs)]
    golds, tools = [golds_for(c) for c in convs], [c.tools for c in convs]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, preds, golds, tools, q)) for r in range(2)]
    for p in procs:
        p.start()
    res = q.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert res == pytest.approx(tool_call_metrics(preds, golds, tools))
