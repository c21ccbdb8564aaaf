"""The runtime loop against a remote state manager (Exosphere v0 over HTTP, extensions when offered)."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING, Any

from ..errors import BadRequestError, ExosphereError, NotFoundError, TransportError
from .http import HttpTransport

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["run_remote_runtime"]

log = logging.getLogger("exosphere_nb.runtime.remote")

# results sent in one POST /states/results at most, and such requests in flight at once
REPORT_BATCH_MAX = 512
REPORT_BATCHES_IN_FLIGHT = 1
# while the last claim came back full and workers wait on an empty queue: claims in flight per waiting
# worker, and at most this many in all (at batch_size 16: up to 256 states prefetched, only while the
# runtime's workers are idle for want of them)
CLAIMS_PER_WAITING_WORKER = 4
MAX_CLAIMS_IN_FLIGHT = 16


async def run_remote_runtime(runtime: Runtime) -> None:
    """The runtime loop against a remote state manager: prefetching claims, concurrent reports.

    A server answers a claim or a result only once it is committed, so throughput depends on how much
    work shares each group commit. Claims: one at a time while the queue is below batch_size; while
    workers wait on an empty queue and the last claim came back full, several (see
    CLAIMS_PER_WAITING_WORKER). Results: against a server with the `results` extension, executed and
    errored results are queued, and a reporter sends whatever has accumulated in one request as soon
    as fewer than REPORT_BATCHES_IN_FLIGHT are in flight (a lone result goes out at once; under load
    the batches grow). Against plain v0, one request per result, as the official SDK sends.
    """
    from ..node import latest_definition, node_class_errors, node_schema
    from ..runtime import outputs_of
    from ..signals import PruneSignal, ReQueueAfterSignal

    target = runtime._target
    # connections: claims in flight, one results batch (or per-state reports against plain v0), heartbeats
    transport = HttpTransport(runtime._namespace, target.uri, target.key, max_connections=64)  # type: ignore[arg-type]
    ns = runtime._namespace
    current = {name: latest_definition(cls) for name, cls in runtime._node_mapping.items()}
    await transport.register_nodes(runtime._name, [node_schema(c, ns) for c in current.values()])
    runtime._registered.set()
    caps = await transport.capabilities()
    extensions = set(caps.get("extensions", ()))
    lease_s = float(caps.get("lease_ms", 30 * 60 * 1000)) / 1000
    runtime._stop_event = stop_event = asyncio.Event()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    in_flight: dict[str, dict[str, Any]] = {}
    runtime._in_flight = in_flight
    # claims held besides the running states: prefetched ones waiting for a worker, and finished
    # ones whose result is not acknowledged yet. Heartbeats renew them all: a state must not expire
    # (and run again) while it waits in our queue or while the state manager is briefly unreachable.
    prefetched: dict[str, dict[str, Any]] = {}
    unreported: set[str] = set()
    reports: set[asyncio.Task[None]] = set()
    limit = asyncio.Semaphore(max(8, runtime._batch_size * 2))
    names = list(runtime._node_names)
    batched = "results" in extensions
    pending: list[dict[str, Any]] = []  # results waiting for the reporter (batched mode)
    wake = asyncio.Event()
    batch_slots = asyncio.Semaphore(REPORT_BATCHES_IN_FLIGHT)

    batch_size = runtime._batch_size
    max_claims = max(1, min(MAX_CLAIMS_IN_FLIGHT, CLAIMS_PER_WAITING_WORKER * runtime._workers))
    waiting = 0  # workers waiting for a state

    def take(task: asyncio.Task[list[dict[str, Any]]]) -> int:
        """Queue a finished claim's states; returns how many."""
        try:
            states = task.result()
        except ExosphereError as exc:
            log.warning("claim failed: %s", exc.detail)
            return 0
        for s in states:
            prefetched[s["state_id"]] = s
            queue.put_nowait(s)
        return len(states)

    async def poll() -> None:
        # One claim at a time while the queue is below batch_size (the official SDK's rule). While
        # there is more work than that (the last claim came back full) and workers wait with the
        # queue empty, each waiting worker may have a claim of its own in flight, as each embedded
        # worker claims for itself: the claims share the server's group commits, hiding their latency.
        idle = 0.01
        claims: set[asyncio.Task[list[dict[str, Any]]]] = set()
        more = False
        try:
            while not stop_event.is_set():
                while len(claims) < max_claims and (
                    queue.qsize() + len(claims) * batch_size < batch_size
                    or (more and queue.empty() and len(claims) < CLAIMS_PER_WAITING_WORKER * waiting)
                ):
                    claims.add(asyncio.create_task(transport.claim(names, batch_size)))
                if not claims:
                    await asyncio.sleep(0.005)
                    continue
                done, _ = await asyncio.wait(claims, return_when=asyncio.FIRST_COMPLETED)
                got = 0
                for task in done:
                    claims.discard(task)
                    n = take(task)
                    got += n
                    more = n >= batch_size
                if got:
                    idle = 0.01
                    continue
                if claims:
                    continue
                # nothing to do: back off up to poll_interval (woken early by stop)
                try:
                    await asyncio.wait_for(stop_event.wait(), timeout=idle)
                except TimeoutError:
                    pass
                idle = min(float(runtime._poll_interval), idle * 2)
        finally:
            if claims:  # stopping: what those claims took goes to the queue, so it is handed back
                done, pending_claims = await asyncio.wait(claims, timeout=5)
                for task in done:
                    take(task)
                for task in pending_claims:
                    task.cancel()

    async def send_batch(batch: list[dict[str, Any]]) -> None:
        try:
            answers = await transport.report_many(batch)
        except TransportError as exc:
            # unreachable (e.g. restarting): keep the results (their leases renewed) and send them again
            log.warning("could not report %d results yet, will retry: %s", len(batch), exc.detail)
            await asyncio.sleep(0.5)
            batch_slots.release()
            pending[:0] = batch
            wake.set()
            return
        except ExosphereError as exc:
            batch_slots.release()
            if isinstance(exc, BadRequestError | NotFoundError):
                # e.g. over the body size limit (one bad result must not sink the others), or no such route
                log.info("batch of %d results refused (%s): reporting them one by one", len(batch), exc.detail)
                for item in batch:
                    body = {k: v for k, v in item.items() if k not in ("state_id", "kind")}
                    send(item["state_id"], item["kind"], body, single=True)
                return
            unreported.difference_update(item["state_id"] for item in batch)
            log.warning("could not report %d results: %s", len(batch), exc.detail)
            return
        batch_slots.release()
        unreported.difference_update(item["state_id"] for item in batch)
        for item, answer in zip(batch, answers):
            detail = answer.get("detail")
            if detail is None:
                continue
            if answer.get("status_code") == 400 and " not QUEUED" in str(detail):
                log.info("result for state %s not applied: %s", item["state_id"], detail)
            else:
                log.warning("could not report %s for state %s: %s", item["kind"], item["state_id"], detail)

    async def reporter() -> None:
        while True:
            await wake.wait()
            wake.clear()
            while pending:
                await batch_slots.acquire()  # meanwhile more results queue up: the next batch grows
                batch = pending[:REPORT_BATCH_MAX]
                del pending[:REPORT_BATCH_MAX]
                task = asyncio.create_task(send_batch(batch))
                reports.add(task)
                task.add_done_callback(reports.discard)

    async def drain_reports() -> None:
        while pending or reports:
            wake.set()
            if reports:
                await asyncio.wait(list(reports))
            else:
                await asyncio.sleep(0.001)

    def send(state_id: str, kind: str, body: dict[str, Any], single: bool = False) -> None:
        unreported.add(state_id)
        if batched and not single and kind in ("executed", "errored"):  # JSON-safe; prune data may not be
            pending.append({"state_id": state_id, "kind": kind, **body})
            wake.set()
            return

        async def go() -> None:
            async with limit:
                try:
                    while True:
                        try:
                            await transport.report(state_id, kind, body)
                            return
                        except TransportError as exc:
                            if stop_event.is_set():
                                raise
                            # unreachable (e.g. restarting): keep the result and send it again
                            log.warning(
                                "could not report %s for state %s yet, will retry: %s", kind, state_id, exc.detail
                            )
                            await asyncio.sleep(0.5)
                except ExosphereError as exc:
                    log.warning("could not report %s for state %s: %s", kind, state_id, exc.detail)
                finally:
                    unreported.discard(state_id)

        task = asyncio.create_task(go())
        reports.add(task)
        task.add_done_callback(reports.discard)

    async def execute(state: dict[str, Any]) -> None:
        sid = state["state_id"]
        name = state["node_name"]
        try:
            cls = latest_definition(runtime._node_mapping[name])
            if cls is not current[name]:
                errors = node_class_errors([cls])
                if errors:
                    raise ExosphereError("; ".join(errors))
                current[name] = cls
                await transport.register_nodes(runtime._name, [node_schema(cls, ns)])
            inputs = cls.Inputs.model_validate(state["inputs"])
            if cls.Secrets.model_fields:
                try:
                    values = await transport.secrets(sid)
                except TransportError as exc:
                    # not the node's failure (reporting it would spend a retry): keep the claim, try later
                    log.warning("could not fetch secrets for state %s yet, will retry: %s", sid, exc.detail)
                    prefetched[sid] = state
                    asyncio.get_running_loop().call_later(0.5, queue.put_nowait, state)
                    return
                secrets = cls.Secrets.model_validate(values)
            else:
                secrets = cls.Secrets()
            outputs = outputs_of(await cls()._execute(inputs, secrets), cls)
        except PruneSignal as signal:
            send(sid, "prune", {"data": signal.data})
        except ReQueueAfterSignal as signal:
            send(sid, "re-enqueue-after", {"enqueue_after": signal.delay_ms})
        except asyncio.CancelledError:
            raise
        except Exception:
            send(sid, "errored", {"error": traceback.format_exc()})
        else:
            runtime.executed_count += 1
            send(sid, "executed", {"outputs": outputs})

    async def worker() -> None:
        nonlocal waiting
        since_yield = 0
        while not stop_event.is_set():
            if not queue.empty():
                state = queue.get_nowait()
                since_yield += 1
                if since_yield >= 32:  # let the poller and reporter run between fast nodes
                    since_yield = 0
                    await asyncio.sleep(0)
            else:
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop_event.wait())
                waiting += 1
                try:
                    await asyncio.wait((getter, stopper), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting -= 1
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
                    break
                state = getter.result()
            prefetched.pop(state["state_id"], None)
            in_flight[state["state_id"]] = state
            try:
                await execute(state)
            finally:
                in_flight.pop(state["state_id"], None)

    async def heartbeat() -> None:
        while not stop_event.is_set():
            try:
                await asyncio.wait_for(stop_event.wait(), timeout=max(0.05, lease_s / 3))
            except TimeoutError:
                pass
            held = list(dict.fromkeys([*in_flight, *prefetched, *unreported]))
            if held and "heartbeat" in extensions:
                try:
                    await transport.heartbeat(held)
                except ExosphereError as exc:
                    log.warning("heartbeat failed: %s", exc.detail)

    poller = asyncio.create_task(poll())
    beat = asyncio.create_task(heartbeat())
    reporting = asyncio.create_task(reporter())
    runtime._tasks = [asyncio.create_task(worker()) for _ in range(runtime._workers)]
    try:
        await asyncio.gather(*runtime._tasks, return_exceptions=True)
    finally:
        poller.cancel()
        beat.cancel()
        await asyncio.gather(poller, return_exceptions=True)  # its last claims land in the queue
        try:
            await asyncio.wait_for(drain_reports(), timeout=10)
        except TimeoutError:
            log.warning("%d results not reported in time (their leases will expire)", len(pending))
            for task in list(reports):  # reports still retrying must not outlive the runtime
                task.cancel()
        reporting.cancel()
        left = [s["state_id"] for s in list(in_flight.values())]
        while not queue.empty():
            left.append(queue.get_nowait()["state_id"])
        if left and "release" in extensions:
            try:
                await transport.release(left)
            except ExosphereError as exc:
                log.warning("could not hand back %d states (their leases will expire): %s", len(left), exc.detail)
        await transport.aclose()
