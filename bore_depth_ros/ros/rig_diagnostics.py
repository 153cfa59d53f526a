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
            - self.sets_emitted
            - queued[i]
            for i in range(len(self.cameras))
        ]
        return {
            "sets_emitted": self.sets_emitted,
            "sets_out": published,
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
        if self._lazy_idle:
            level, message = diag.OK, "idle: lazy mode and nobody subscribes to any output"
        elif self.fusion_status.startswith("waiting for TF"):
            level, message = diag.WARN, self.fusion_status
        elif drops or self.errors.total():
            level, message = (
                diag.WARN,
                "dropped sets: "
                + ", ".join(f"{k}={v}" for k, v in {**drops, **self.errors.as_dict()}.items()),
            )
        elif values["sets_out"]:
            level, message = diag.OK, "ok"
        else:
            silent = [c for c, k in zip(self.cameras, self.frames_in) if k == 0]
            level, message = (
                diag.OK,
                ("no synchronized set yet" + (f": no images yet from {silent}" if silent else "")),
            )
        if skips.get("overload"):
            message += f"; overloaded: skipped {skips['overload']} sets (newest wins)"
        statuses = [diag.status(f"{name}: rig", self.target_frame, level, message, values)]
        for i, cam in enumerate(self.cameras):
            rej = self.rejections[i].as_dict()
            sd = self.sync_drops[i].as_dict()
            v = {
                "frames_in": self.frames_in[i],
                "input_rate_hz": round(self.rate_in[i].rate(), 2),
                "output_rate_hz": round(self.rate_out.rate(), 2),
                "rejected_total": sum(rej.values()),
                "sync_dropped_total": sum(sd.values()),
                "lost_in_transport": self.gaps[i].lost,
                "camera_info_received": len(self._infos[i]),
                "latency_ms.p95": round(self.timing["latency_ms"].percentile(95), 3),
            }
            v.update({f"rejected.{k}": c for k, c in rej.items()})
            v.update({f"sync_dropped.{k}": c for k, c in sd.items()})
            no_info = not len(self._infos[i]) and self.frames_in[i]
            lvl = diag.WARN if rej or no_info else diag.OK
            msg = (
                ("rejected inputs: " + ", ".join(f"{k}={c}" for k, c in rej.items()))
                if rej
                else (
                    "no camera_info yet"
                    if no_info
                    else self.silent_input(f"{cam}/image")
                    if not self.frames_in[i]
                    else "ok"
                )
            )
            statuses.append(diag.status(f"{name}: {cam}", cam, lvl, msg, v))
        return statuses
