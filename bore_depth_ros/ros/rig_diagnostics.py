"""What the surround node reports on ``/diagnostics``: the rig's frame and set accounting and one
status for the rig plus one per camera (rates, rejections by reason, synchroniser drops, TF and
fusion state). A mixin of :class:`~bore_depth_ros.ros.surround_node.SurroundDepthNode`, kept
apart from its wiring; it reads the node's counters and never changes them.
"""

from __future__ import annotations

from . import diagnostics as diag


class RigDiagnostics:
    def accounting(self, counts: tuple[int, dict] | None = None) -> dict:
        """Where every frame and set went; ``unaccounted`` is 0 when the node is idle.
        ``counts``: a ``worker_counts()`` snapshot to use (read once per diagnostics message)."""
        in_worker, outcomes = counts if counts is not None else self.worker_counts()
        published, errors = outcomes.get("published", 0), outcomes.get("error", 0)
        worker_dropped = sum(v for k, v in outcomes.items() if k.startswith("dropped."))
        pending_set = int(self._pending_group is not None)
        sets_dropped = self.set_drops.total() + worker_dropped
        sets_skipped = self.set_skips.total()
        sets_done = published + sets_dropped + sets_skipped + errors + in_worker + pending_set
        queued = self.sync.pending()
        per_camera = [
            self.frames_in[i]
            - (self.rejections[i].total() - self._set_rejects[i])
            - self.sync_drops[i].total()
            - self.in_sets[i]
            - queued[i]
            for i in range(len(self.cameras))
        ]
        return {
            "sets_emitted": self.sets_emitted,
            "sets_out": published,
            "sets_degraded": self.degraded_sets,
            "sets_dropped": sets_dropped,
            "skipped_total": sets_skipped,
            "processing_errors": errors,
            "in_worker": in_worker,
            "set_waiting_for_camera_info": pending_set,
            "unaccounted_sets": self.sets_emitted - sets_done,
            "unaccounted_frames": max(per_camera, key=abs) if per_camera else 0,
        }

    def node_statuses(self, common: dict) -> list:
        name = self.get_fully_qualified_name()
        st = self.state_status(f"{name}: rig")
        if st is not None:
            return [st]
        counts = self.worker_counts()
        drops = self.set_drops.as_dict()
        for k, v in counts[1].items():  # sets the worker dropped (waiting_for_tf)
            if k.startswith("dropped."):
                drops[k[len("dropped.") :]] = drops.get(k[len("dropped.") :], 0) + v
        values = self.accounting(counts)
        values.update(
            {
                "fused_out": self.fused_out,
                "fused_waiting_for_tf": self.fusion_waiting,
                "fusion_status": self.fusion_status,
                "sync_pending": self.sync.pending(),
                "output_rate_hz": round(self.rate_out.rate(), 2),
            }
        )
        values.update({f"dropped.{k}": v for k, v in drops.items()})
        skips = self.set_skips.as_dict()
        values.update({f"skipped.{k}": v for k, v in skips.items()})
        values.update({f"tf_failures.{k}": v for k, v in self.tf_failures.as_dict().items()})
        values.update(diag.timing_values(self.timing))
        values.update(common)
        window = self.recent.window
        now = self.now_ns()
        absent = dict(self._absent)
        totals = {f"dropped.{k}": v for k, v in drops.items()}
        totals.update({k: v for k, v in common.items() if k.startswith("processing_error.")})
        for i, cam in enumerate(self.cameras):
            totals.update({f"{cam}.rejected.{k}": c for k, c in self.rejections[i].as_dict().items()})
        totals["skipped.overload"] = skips.get("overload", 0)
        totals["sets_emitted"] = self.sets_emitted
        totals["frames_in"] = sum(self.frames_in)
        recent = self.recent.update(totals)
        new_sets, new_frames = recent.pop("sets_emitted", 0), recent.pop("frames_in", 0)
        overload = recent.pop("skipped.overload", 0)
        silent_all = sum(self.frames_in) and all(
            (q := self.health.silent_for(i, now)) is not None and q > self.health.camera_timeout_ns(i)
            for i in range(len(self.cameras))
        )
        disagreement = self.health.disagreement()
        offsets = self.health.clock_offsets()
        n = len(self.cameras)
        if self._lazy_idle:
            level, message = diag.OK, "idle: lazy mode and nobody subscribes to any output"
        elif silent_all:
            level = diag.STALE
            message = "no usable image from any camera: " + "; ".join(
                self.health.describe(i, "camera_silent", now) for i in range(n)
            )
        elif absent:
            level = diag.WARN
            message = f"degraded: sets from {n - len(absent)} of {n} cameras; " + "; ".join(
                self.health.describe(i, r, now) for i, r in sorted(absent.items())
            )
        elif disagreement:
            level = diag.WARN
            message = (
                f"camera stamps disagree by more than slop ({self.sync.slop / 1e9:g} s), no majority: "
                + ", ".join(f"{self.cameras[i]} {o / 1e9:+.2f} s" for i, o in sorted(disagreement.items()))
                + ": check clock sync (or set time_offset.<camera>)"
            )
        elif offsets:
            level = diag.WARN
            message = "; ".join(self.health.describe(i, "clock_offset", now) for i in sorted(offsets))
        elif self.fusion_status.startswith("waiting for TF"):
            level, message = diag.WARN, self.fusion_status
        elif recent:
            level, message = diag.WARN, "recent problems: " + diag.recent_summary(recent, window)
        elif new_frames and not new_sets and self.sets_emitted:
            level = diag.WARN
            message = f"no synchronized set in the last {window:g} s while cameras deliver (see sync_dropped)"
        elif values["sets_out"]:
            level, message = diag.OK, "ok"
        else:
            silent = [c for c, k in zip(self.cameras, self.frames_in) if k == 0]
            level, message = (
                diag.OK,
                ("no synchronized set yet" + (f": no images yet from {silent}" if silent else "")),
            )
        if overload:
            level = max(level, diag.WARN)
            message += f"; overloaded: skipped {overload} sets in the last {window:g} s (newest wins)"
        statuses = [diag.status(f"{name}: rig", self.target_frame, level, message, values)]
        all_offsets = self.health.offsets()
        for i, cam in enumerate(self.cameras):
            rej = self.rejections[i].as_dict()
            sd = self.sync_drops[i].as_dict()
            quiet = self.health.silent_for(i, now)
            v = {
                "frames_in": self.frames_in[i],
                "frames_in_sets": self.in_sets[i],
                "input_rate_hz": round(self.rate_in[i].rate(), 2),
                "output_rate_hz": round(self.rate_out.rate(), 2),
                "rejected_total": sum(rej.values()),
                "sync_dropped_total": sum(sd.values()),
                "lost_in_transport": self.gaps[i].lost,
                "camera_info_received": len(self._infos[i]),
                "latency_ms.p95": round(self.timing["latency_ms"].percentile(95), 3),
                "silent_for_s": round((quiet or 0) / 1e9, 3),
                "timeout_s": round(self.health.camera_timeout_ns(i) / 1e9, 3),
                "time_offset_s": self.time_offsets[i] / 1e9,
                "in_sets": i not in absent,
            }
            if i in all_offsets:
                v["clock_offset_s"] = round(all_offsets[i] / 1e9, 3)
            v.update({f"rejected.{k}": c for k, c in rej.items()})
            v.update({f"sync_dropped.{k}": c for k, c in sd.items()})
            recent_rej = {k[len(cam) + 1 :]: c for k, c in recent.items() if k.startswith(f"{cam}.rejected.")}
            no_info = not len(self._infos[i]) and self.frames_in[i]
            if i in absent:
                lvl, msg = diag.ERROR, self.health.describe(i, absent[i], now) + ": left out of the sets"
                if absent[i] == "camera_silent":
                    msg += f" ({self.silent_input(self.image_topics[i])})" if not self.frames_in[i] else ""
            elif i in offsets:
                lvl, msg = diag.WARN, self.health.describe(i, "clock_offset", now)
            elif recent_rej:
                lvl, msg = diag.WARN, "rejected inputs: " + diag.recent_summary(recent_rej, window)
            elif no_info:
                lvl, msg = diag.WARN, "no camera_info yet"
            elif not self.frames_in[i]:
                lvl, msg = diag.OK, self.silent_input(self.image_topics[i])
            else:
                lvl, msg = diag.OK, "ok"
            statuses.append(diag.status(f"{name}: {cam}", cam, lvl, msg, v))
        return statuses
