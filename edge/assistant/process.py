"""The assistant service: job intake, a bounded backlog, explanations, generation requests, self-test.

One process (``iad-edge assistant RECIPE``; a supervised child in ``iad-edge
demo``), three threads:

* **intake**: claims NG jobs from the spool folder every ``poll_s``; the MQTT
  network thread adds jobs from ``<root>/result`` (NG with regions) and
  ``<root>/cmd/generate``. Duplicates (same session + trigger id from both
  paths) are ignored.
* **backlog**: bounded (``assistant.backlog``); when full, the *oldest* job is
  dropped and a ``skipped`` note is published for it at once — the newest
  part is the one the operator is looking at.
* **worker** (the main thread): one job at a time, at SCHED_IDLE / nice /
  idle IO priority, pausing between tokens while the lane's busy flag is set.

A crash (e.g. a llama.cpp abort) kills this process only; the supervisor or
systemd restarts it and claimed jobs (``.json.work`` in the spool) are retried
once.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from edge.assistant.busy_signal import BusySignal, signal_name
from edge.assistant.evidence import region_evidence, region_images
from edge.assistant.explain import Explainer, fallback_explanation
from edge.assistant.region_explain import RegionExplainer, bbox_feature, region_vector
from edge.assistant.spool import SpoolJob, SpoolReader, write_job
from edge.atomic import write_bytes_atomic
from edge.config.recipe import Recipe
from edge.errors import IadError
from edge.generation import generate_defect, normalise_defect_type, random_defect_mask, synthesize_defect
from edge.imageio import read_image, write_image_atomic
from edge.inspector import Inspector
from edge.mqtt.commands import GenerateCommand
from edge.mqtt.topics import Topics
from edge.prototypes import Prototypes, match_candidates
from edge.security import allowed_roots, is_within

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any], bool], Any]  # (topic, body, retain)


@dataclass
class Job:
    """One unit of assistant work."""

    kind: str  # "explain" | "generate" | "selftest"
    key: str  # trigger id (explain/selftest) or request id (generate): what the answer is keyed by
    body: dict[str, Any]
    spool: SpoolJob | None = None
    received: float = field(default_factory=time.time)

    def finish(self) -> None:
        if self.spool is not None:
            self.spool.done()


class Backlog:
    """A bounded FIFO that drops its oldest job when full (and says which)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._jobs: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()

    def put(self, job: Job) -> Job | None:
        """Add ``job``; return the job dropped to make room (the oldest), if any."""
        with self._cond:
            dropped = self._jobs.popleft() if len(self._jobs) >= self.capacity else None
            self._jobs.append(job)
            self._cond.notify()
            return dropped

    def get(self, timeout: float) -> Job | None:
        with self._cond:
            if not self._jobs:
                self._cond.wait(timeout)
            return self._jobs.popleft() if self._jobs else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)


def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class AssistantService:
    """Everything the assistant process does, minus process setup (see :func:`edge.commands.assistant`)."""

    def __init__(
        self,
        recipe: Recipe,
        publish: Publish | None = None,
        explainer: Explainer | RegionExplainer | None = None,
        inspector: Any = None,
        busy: BusySignal | None = None,
        poll_s: float = 0.1,
        explainer_error: str | None = None,
    ):
        cfg = recipe.assistant
        self.recipe = recipe
        self.cfg = cfg
        self.topics = Topics(recipe.topic_root)
        self.status_topic = self.topics.assistant_status
        self._publish = publish
        self.explainer = explainer
        self.explainer_error = explainer_error or (None if explainer else "no assistant.model configured")
        self._inspector = inspector
        self.busy = busy or BusySignal(cfg.busy_signal or signal_name(recipe.line, recipe.station))
        self.backlog = Backlog(cfg.backlog)
        self.spool = SpoolReader(Path(cfg.spool))
        self.poll_s = poll_s
        self.counters = collections.Counter()
        self.priority: dict[str, Any] = {}
        self.self_test: dict[str, Any] | None = None
        self._seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._seen_lock = threading.Lock()
        self._prototypes = None
        if cfg.prototypes:

            self._prototypes = Prototypes.load(cfg.prototypes)

    # ------------------------------------------------------------------ output
    def publish(self, topic: str, body: dict[str, Any], retain: bool = False) -> None:
        body = dict(body, pid=os.getpid())
        if self._publish is None:
            log.info("%s %s", topic, body)
            return
        try:
            self._publish(topic, body, retain)
        except Exception:  # the bus is advisory for the assistant
            log.exception("assistant: publishing on %s failed", topic)

    def publish_status(self, state: str = "online") -> None:
        body = {"state": state, "time": time.time(), "backlog": len(self.backlog), "capacity": self.backlog.capacity,
                "counters": dict(self.counters), "priority": self.priority,
                "model": str(self.explainer.model_path) if self.explainer else None, "model_error": self.explainer_error}
        if self.self_test is not None:
            body["self_test"] = self.self_test
        self.publish(self.status_topic, body, retain=True)

    def _topic_for(self, job: Job) -> str:
        return self.topics.generation if job.kind == "generate" else self.topics.explanation

    def _note(self, job: Job, status: str, reason: str) -> None:
        key = "request_id" if job.kind == "generate" else "trigger_id"
        body = {key: job.body.get(key, job.key), "session": job.body.get("session"), "status": status, "reason": reason}
        if job.kind == "generate" and job.body.get("trigger_id") is not None:
            body["trigger_id"] = job.body["trigger_id"]
        if job.kind == "selftest":
            self.self_test = {"status": status, "reason": reason, "time": time.time()}
            self.publish_status()
            return
        self.publish(self._topic_for(job), body)

    # ------------------------------------------------------------------ intake
    def submit(self, job: Job) -> bool:
        """Queue a job (dropping and announcing the oldest when the backlog is full); False for a duplicate."""
        if job.kind == "explain":
            k = (str(job.body.get("session") or ""), str(job.key))
            with self._seen_lock:
                if k in self._seen:
                    job.finish()
                    return False
                self._seen[k] = None
                while len(self._seen) > 4096:
                    self._seen.popitem(last=False)
        dropped = self.backlog.put(job)
        self.counters["received"] += 1
        if dropped is not None:
            self.counters["skipped"] += 1
            self._note(dropped, "skipped", f"backlog full ({self.backlog.capacity} jobs): the oldest job was dropped")
            dropped.finish()
        return True

    def on_message(self, topic: str, body: Any) -> None:
        """MQTT intake: NG results with regions become explanation jobs; cmd/generate becomes a generation job."""
        if not isinstance(body, dict):
            return
        if topic == self.topics.result and self.cfg.mqtt_intake:
            if body.get("verdict") == "NG" and body.get("regions") and not body.get("fail_safe"):
                # through the spool, so that a job taken from MQTT survives a crash like a lane-spooled one
                write_job(Path(self.cfg.spool), dict(body, kind="explain"))
        elif topic == self.topics.cmd("generate"):


            try:  # the same schema the lane's command listener uses: unknown keys, bad types -> a reply, no job
                request = GenerateCommand.model_validate(body)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
                self.publish(self.topics.cmd_result("generate"),
                             {"ok": False, "request_id": body.get("request_id"), "error": f"invalid generate command: {problems}"})
                return
            rid = request.request_id or f"gen-{int(time.time() * 1000)}"
            job = request.model_dump(exclude_none=True)
            write_job(Path(self.cfg.spool), dict(job, kind="generate", request_id=rid, trigger_id=request.trigger_id))

    def poll_spool(self) -> int:
        jobs = self.spool.claim_new()
        for sj in jobs:
            self.submit(self._from_spool(sj))
        return len(jobs)

    def recover(self) -> None:
        """Re-queue jobs a crashed run had claimed; give up (and say so) on those that were claimed twice."""
        retry, failed = self.spool.recover()
        for sj in failed:
            job = self._from_spool(sj)
            self.counters["failed"] += 1
            self._note(job, "failed", "the assistant stopped twice while holding this job; not retried again")
            job.finish()
        for sj in retry:
            self.submit(self._from_spool(sj))

    @staticmethod
    def _from_spool(sj: SpoolJob) -> Job:
        kind = sj.body.get("kind", "explain")
        key = sj.body.get("request_id") if kind == "generate" else sj.body.get("trigger_id")
        return Job(kind, str(key), sj.body, spool=sj)

    # ------------------------------------------------------------------ worker
    def run(self, stop: threading.Event, max_jobs: int | None = None) -> int:
        """Serve until ``stop`` is set (or ``max_jobs`` jobs are done); return the number of jobs done."""
        self.recover()
        intake = threading.Thread(target=self._intake_loop, args=(stop,), name="assistant-intake", daemon=True)
        intake.start()
        self.publish_status("online")
        done = 0
        while not stop.is_set() and (max_jobs is None or done < max_jobs):
            job = self.backlog.get(timeout=self.poll_s)
            if job is None:
                continue
            self.handle(job)
            done += 1
        stop.set()
        intake.join(2.0)
        self.release_backlog()
        return done

    def release_backlog(self) -> int:
        """Clean shutdown: hand waiting spool jobs back unclaimed (they are not crash retries); return how many."""
        released = 0
        while (job := self.backlog.get(timeout=0)) is not None:
            if job.spool is not None:
                job.spool.release()
                released += 1
        return released

    def _intake_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_spool()
            except Exception:
                log.exception("assistant: spool intake failed")
            stop.wait(self.poll_s)

    def handle(self, job: Job) -> dict[str, Any] | None:
        """Do one job and publish its outcome; errors become a 'failed' note, never an exception."""
        try:
            if job.kind == "explain":
                msg = self.explain_job(job)
                self.publish(self.topics.explanation, msg)
            elif job.kind == "generate":
                msg = self.generate_job(job)
                self.publish(self.topics.generation, msg)
            elif job.kind == "selftest":
                msg = self.selftest_job(job)
                self.self_test = msg
            else:
                raise IadError(f"unknown job kind {job.kind!r}")
            self.counters["done"] += 1
            return msg
        except Exception as exc:  # one bad job must not stop the assistant
            log.exception("assistant job %s %s failed", job.kind, job.key)
            self.counters["failed"] += 1
            self._note(job, "failed", f"{type(exc).__name__}: {exc}")
            return None
        finally:
            job.finish()
            self.publish_status()

    # ------------------------------------------------------------------ job kinds
    @property
    def inspector(self) -> Any:
        if self._inspector is None:

            self._inspector = Inspector.from_recipe(self.recipe)
        return self._inspector

    def _job_image(self, job: Job, wait_s: float = 2.0) -> np.ndarray | None:
        if job.spool is not None and job.spool.image_path is not None:
            return job.spool.load_image()
        entry = job.body.get("archive")
        if not entry:
            return None

        frame = Path(entry) / "frame.png"
        deadline = time.monotonic() + wait_s  # the archive writer may still be writing the entry
        while not frame.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        return read_image(frame) if frame.is_file() else None

    def explain_job(self, job: Job) -> dict[str, Any]:
        start = time.monotonic()
        deadline = start + self.cfg.job_budget_s
        regions = list(job.body.get("regions") or [])
        image = self._job_image(job)
        features: list[np.ndarray | None] = [None] * len(regions)
        anomaly_map = None
        vision = self.explainer is not None and self.explainer.vision
        region_tokens = self.explainer is not None and hasattr(self.explainer, "reader")  # a RegionExplainer
        if image is not None and (self._prototypes is not None or vision or region_tokens):
            self.busy.wait_idle(timeout=max(0.0, deadline - time.monotonic()))
            result = self.inspector.inspect(image)
            anomaly_map = result.anomaly_map
            for i, r in enumerate(regions):  # the lane's regions are authoritative; features come from the twin
                best = max(result.regions, key=lambda q: _iou(q.bbox, r["bbox"]), default=None)
                if best is not None and _iou(best.bbox, r["bbox"]) >= 0.5:
                    features[i] = best.feature
                elif region_tokens:  # the lane's region, not reproduced by the twin: its feature at the lane's place

                    features[i] = bbox_feature(result, r["bbox"], self.recipe, int(getattr(self.inspector.expert, "patch_size", 14)))

        thresholds = {"pixel": self.recipe.thresholds.pixel, "image_score": self.recipe.thresholds.image_score}
        size = (int(image.shape[1]), int(image.shape[0])) if image is not None else None
        explanations = []
        for i, region in enumerate(regions[: self.cfg.max_regions]):
            cands = match_candidates(self._prototypes, features[i], self.cfg.top_k)
            ev = region_evidence(region, i, job.body.get("score"), thresholds, cands, size)
            if self.explainer is None:
                explanations.append(fallback_explanation(ev, self.explainer_error or "no model"))
                continue
            imgs = region_images(image, anomaly_map, region, self.recipe.thresholds.pixel) if vision and image is not None else None
            if region_tokens:  # with an mmproj the crop and overlay follow the region tokens in the same prompt
                explanations.append(self.explainer.explain(ev, imgs, deadline=deadline,
                                                           vector=self._region_vector(region, features[i], image)))
                if "consistent" in explanations[-1]:  # the model's claims vs the mask: contradictions are counted on status
                    self.counters["consistent" if explanations[-1]["consistent"] else "contradictions"] += 1
                continue
            explanations.append(self.explainer.explain(ev, imgs, deadline=deadline))
        msg = {
            "trigger_id": job.body.get("trigger_id"),
            "session": job.body.get("session"),
            "status": "done",
            "explanations": explanations,
            "regions_total": len(regions),
            "model": self.explainer.model_path.name if self.explainer else None,
            "elapsed_ms": round((time.monotonic() - start) * 1000, 1),
        }
        entry = job.body.get("archive")
        if entry and Path(entry).is_dir():
            write_bytes_atomic(Path(entry) / "explanation.json", json.dumps(msg, indent=1, default=str).encode(),
                               fsync=False)
        return msg

    def _region_vector(self, region: dict[str, Any], feature: np.ndarray | None, image: np.ndarray | None) -> np.ndarray | None:
        """The region's evidence vector for the projector (None without the frame or the region's feature)."""
        return region_vector(self.recipe, region, feature, self.explainer.feature_dim, image)

    def _allowed(self, path: Path) -> Path:
        """Generation requests come from the network: read only under the archive, the recipe's folder
        and the appliance's allowed roots (``$IAD_ALLOWED_ROOTS``, see :mod:`edge.security`)."""

        roots = [Path(self.recipe.archive.path).resolve(), *allowed_roots(self.recipe.source_path)]
        real = path.resolve()
        if not is_within(real, roots):
            raise IadError(f"{path}: outside the folders a generation request may read ({', '.join(map(str, roots))})")
        return real

    def generate_job(self, job: Job) -> dict[str, Any]:

        b = job.body
        kind = normalise_defect_type(b.get("type", "scratch"))
        seed = int(b.get("seed", 0))
        if b.get("archive"):
            src = self._allowed(Path(b["archive"]) / "frame.png")
        elif b.get("image"):
            src = self._allowed(Path(b["image"]))
        else:
            raise IadError("a generate request needs 'image' (a path) or 'archive' (an archive entry)")
        image = read_image(src)
        if b.get("mask"):
            mask = read_image(self._allowed(Path(b["mask"])))
        else:
            mask = random_defect_mask(image.shape[:2], kind, np.random.default_rng(seed))
        gen = generate_defect(image, mask, kind, seed=seed, feather_px=float(b.get("feather", 3.0)),
                              intensity=float(b.get("intensity", 1.0)))
        out_dir = Path(self.recipe.archive.path) / "generated"
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{job.key}-{kind}-{seed}")
        out, mask_out = out_dir / f"{stem}.png", out_dir / f"{stem}.mask.png"
        write_image_atomic(out, gen.image)
        write_image_atomic(mask_out, gen.mask.astype(np.uint8) * 255)
        msg = {"request_id": job.key, "status": "done", "defect_type": kind, "seed": seed, "image": str(out),
               "mask": str(mask_out), "source": str(src), "mask_px": int(gen.mask.sum()), "band_px": int(gen.band.sum())}
        if b.get("trigger_id") is not None:
            msg["trigger_id"] = b["trigger_id"]
        return msg

    def selftest_job(self, job: Job) -> dict[str, Any]:
        """Inject a generated defect into a good live frame (off the decision path) and check the expert catches it."""

        image = self._job_image(job)
        if image is None:
            raise IadError("self-test job without a frame")
        roi = self.recipe.roi
        box = (roi.x, roi.y, roi.width, roi.height) if roi is not None else None
        seed = int(self.counters["selftest"])
        self.counters["selftest"] += 1
        syn = synthesize_defect(image, seed=seed, roi=box, scale=1.5)
        self.busy.wait_idle(timeout=self.cfg.job_budget_s)
        result = self.inspector.inspect(syn.image)
        ys, xs = np.nonzero(syn.mask)
        gt = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        hit = any(_iou(r.bbox, gt) > 0 or _contains(r.bbox, gt) for r in result.regions)
        caught = result.verdict == "NG" and hit
        self.counters["selftest_caught" if caught else "selftest_missed"] += 1
        return {"status": "done", "caught": bool(caught), "defect_type": syn.defect_type, "seed": seed,
                "score": round(float(result.score), 6), "verdict": result.verdict, "defect_bbox": gt,
                "trigger_id": job.body.get("trigger_id"), "time": time.time()}


def _contains(a: list[int], b: list[int]) -> bool:
    return a[0] <= b[0] and a[1] <= b[1] and a[2] >= b[2] and a[3] >= b[3]
