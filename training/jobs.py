"""Fine-tuning jobs as detached subprocesses, one at a time, tracked through files in their folder."""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from common.errors import TrainingJobError
from training.datasets import write_jsonl
from training.progress import (DATASET_FILE, LOG_FILE, PROGRESS_FILE, RESULT_FILE, STATUS_FILE, read_json,
                               read_progress, tail, write_json)
from training.spec import TrainingSpec

# The repository root, where `python -m chatbot` runs: training/ sits directly in it.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
FINAL_STATES = ("completed", "failed", "stopped")
# Popen objects of jobs this process started: polling them reaps the child and gives its exit code.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass
class JobStatus:
    """What the page shows for one job: state, process, exit code, progress and outcome."""

    id: str
    kind: str = "train"
    state: str = "created"
    method: str = ""
    base_model: str = ""
    adapter_name: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    pid: int | None = None
    proc_start: str | None = None
    exit_code: int | None = None
    error: str | None = None
    attempts: int = 0
    stop_requested: bool = False
    adapter_dir: str | None = None
    command: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.state in ("running", "stopping")

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def _proc_start_time(pid: int) -> str | None:
    # Field 22 of /proc/<pid>/stat is the start time: with the pid it names one process, never a reused pid.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if fields[0] != "Z" else None


def _alive(pid: int | None, proc_start: str | None) -> tuple[bool, int | None]:
    """(alive, exit code if known) for a job's process."""
    if not pid:
        return False, None
    child = _CHILDREN.get(pid)
    if child is not None:
        code = child.poll()
        return code is None, code
    if Path("/proc").is_dir():
        current = _proc_start_time(pid)
        return current is not None and (proc_start is None or current == proc_start), None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        return True, None
    return True, None


class JobManager:
    """Creates, starts, watches, stops and resumes jobs under <data>/training/jobs/."""

    def __init__(self, data_dir: str | Path, python: str | None = None, project_root: Path = PROJECT_ROOT):
        self.root = Path(data_dir).resolve() / "training"
        self.jobs_dir = self.root / "jobs"
        self.adapters_dir = self.root / "adapters"
        self.merged_dir = self.root / "merged"
        self.python = python or sys.executable
        self.project_root = project_root
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.adapters_dir.mkdir(parents=True, exist_ok=True)

    # ---- files ----------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        """A job's folder; unknown or unsafe ids are an error."""
        path = self.jobs_dir / job_id
        if "/" in job_id or job_id.startswith(".") or not (path / STATUS_FILE).is_file():
            raise TrainingJobError(f"No job {job_id!r}")
        return path

    def _write_status(self, status: JobStatus) -> None:
        write_json(self.jobs_dir / status.id / STATUS_FILE, asdict(status))

    def _read_status(self, job_id: str) -> JobStatus:
        data = read_json(self.job_dir(job_id) / STATUS_FILE) or {"id": job_id}
        known = JobStatus.__dataclass_fields__
        return JobStatus(**{k: v for k, v in data.items() if k in known})

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # Two browser sessions (or a session and the CLI) must not both see "no job running" and start one.
        with open(self.root / ".jobs.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _new_id(self, label: str) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{label}-{secrets.token_hex(2)}"

    # ---- creating -------------------------------------------------------------------------------

    def create(self, spec: TrainingSpec, train: list[dict], validation: list[dict],
               job_id: str | None = None, left_out_for_length: int = 0) -> JobStatus:
        """Write a training job's folder: job.yaml, train.jsonl, eval.jsonl and its status.

        `left_out_for_length` counts the examples the dataset left out as over-long before the job, so
        the job's metrics can report them beside the ones it leaves out itself.
        """
        job_id = job_id or self._new_id(spec.method)
        name = spec.adapter_name or job_id
        if (self.adapters_dir / name).exists():
            raise TrainingJobError(f"An adapter named {name!r} already exists; choose another name.")
        if any(s.adapter_name == name and not s.finished and s.kind == "train" for s in self.list()):
            raise TrainingJobError(f"Another job will already save an adapter named {name!r}.")
        if not train:
            raise TrainingJobError("The training set is empty.")
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=False)
        write_jsonl(train, job_dir / "train.jsonl")
        spec.train_file = "train.jsonl"
        spec.eval_file = ""
        if validation:
            write_jsonl(validation, job_dir / "eval.jsonl")
            spec.eval_file = "eval.jsonl"
        if spec.method == "qlora":
            spec.load_in_4bit = True
        if left_out_for_length:
            write_json(job_dir / DATASET_FILE, {"left_out_for_length": int(left_out_for_length)})
        spec.save(job_dir / "job.yaml")
        status = JobStatus(id=job_id, method=spec.method, base_model=spec.base_model, adapter_name=name,
                           created_at=time.time())
        self._write_status(status)
        return status

    def create_merge(self, adapter_name: str, output_dir: str | Path | None = None) -> JobStatus:
        """A job that merges an adapter into its base model and writes a standalone model folder."""
        adapter_dir = self.adapters_dir / adapter_name
        if not (adapter_dir / "adapter_config.json").is_file():
            raise TrainingJobError(f"No adapter named {adapter_name!r}")
        output_dir = Path(output_dir) if output_dir else self.merged_dir / adapter_name
        if output_dir.is_dir() and any(output_dir.iterdir()):
            raise TrainingJobError(f"{output_dir} already holds a merged model; delete it to export again.")
        job_id = self._new_id("merge")
        job_dir = self.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        (job_dir / "job.yaml").write_text(yaml.safe_dump(
            {"adapter_dir": str(adapter_dir), "output_dir": str(output_dir.resolve())}), encoding="utf-8")
        status = JobStatus(id=job_id, kind="merge", adapter_name=adapter_name, created_at=time.time(),
                           adapter_dir=str(adapter_dir))
        self._write_status(status)
        return status

    # ---- running --------------------------------------------------------------------------------

    def start(self, job_id: str, resume: bool = False) -> JobStatus:
        """Launch the job's process (no shell, its own process group); refused while another runs."""
        with self._lock():
            active = self.active()
            if active is not None:
                raise TrainingJobError(f"Job {active.id} is still running: one job at a time. Stop it or wait.")
            status = self._read_status(job_id)
            job_dir = self.job_dir(job_id)
            subcommand = "train" if status.kind == "train" else "merge-adapter"
            command = [self.python, "-m", "chatbot", subcommand, "--config", str(job_dir / "job.yaml")]
            if resume:
                command.append("--resume")
            (job_dir / RESULT_FILE).unlink(missing_ok=True)
            env = dict(os.environ)
            env.update(PYTHONUNBUFFERED="1", CHATBOT_DATA_DIR=str(self.root.parent), TOKENIZERS_PARALLELISM="false",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(self.project_root), env.get("PYTHONPATH")])))
            env.setdefault("HF_HUB_OFFLINE", "1")
            env.setdefault("TRANSFORMERS_OFFLINE", "1")
            with open(job_dir / LOG_FILE, "ab") as log:
                log.write(f"\n==== {'resumed' if resume else 'started'} {time.strftime('%Y-%m-%d %H:%M:%S')}"
                          f": {' '.join(command[1:])}\n".encode())
                log.flush()
                process = subprocess.Popen(command, cwd=self.project_root, env=env, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            _CHILDREN[process.pid] = process
            status.state, status.pid, status.exit_code, status.error = "running", process.pid, None, None
            status.proc_start = _proc_start_time(process.pid)
            status.started_at, status.finished_at, status.stop_requested = time.time(), None, False
            status.attempts += 1
            status.command = command
            self._write_status(status)
            return status

    def resume(self, job_id: str, max_steps: int | None = None) -> JobStatus:
        """Start a stopped or failed job again from its last checkpoint (optionally to a new step count)."""
        status = self.status(job_id)
        if status.running:
            raise TrainingJobError(f"Job {job_id} is still running.")
        if status.kind != "train":
            raise TrainingJobError("Only training jobs can be resumed; start the export again instead.")
        if not self.checkpoints(job_id):
            raise TrainingJobError(f"Job {job_id} has no checkpoint yet, so there is nothing to resume from.")
        if max_steps is not None:
            path = self.job_dir(job_id) / "job.yaml"
            spec = TrainingSpec.load(path)
            spec.max_steps = max_steps
            spec.save(path)
        return self.start(job_id, resume=True)

    def stop(self, job_id: str, grace: float = 15.0) -> JobStatus:
        """Ask the job to checkpoint and end (SIGTERM); after `grace` seconds, kill its whole group."""
        status = self.status(job_id)
        if not status.running or not status.pid:
            return status
        status.stop_requested, status.state = True, "stopping"
        self._write_status(status)
        pgid = status.pid  # start_new_session made the job the leader of its own group
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while _alive(status.pid, status.proc_start)[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(status.pid, status.proc_start)[0]:
            os.killpg(pgid, signal.SIGKILL)
            while _alive(status.pid, status.proc_start)[0]:
                time.sleep(0.05)
        try:
            # Anything the job started (data loader workers, say) goes with it, so the GPU is free.
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.status(job_id)

    # ---- watching -------------------------------------------------------------------------------

    def status(self, job_id: str) -> JobStatus:
        """The job's status, settled from its process and result file when the process has ended."""
        status = self._read_status(job_id)
        if not status.running:
            return status
        alive, code = _alive(status.pid, status.proc_start)
        if alive:
            return status
        result = read_json(self.job_dir(job_id) / RESULT_FILE) or {}
        if result.get("state") in FINAL_STATES:
            status.state = result["state"]
            status.error = result.get("error")
            status.adapter_dir = result.get("adapter_dir") or status.adapter_dir
        elif status.stop_requested:
            status.state, status.error = "stopped", "Stopped before the job wrote its result."
        else:
            status.state = "failed"
            status.error = "The process ended without writing a result (killed, or out of memory?); see the log."
        status.exit_code = code if code is not None else result.get("exit_code")
        status.finished_at = result.get("finished_at") or time.time()
        _CHILDREN.pop(status.pid or -1, None)
        self._write_status(status)
        return status

    def list(self) -> list[JobStatus]:
        """Every job, newest first."""
        out = []
        for path in self.jobs_dir.iterdir():
            if (path / STATUS_FILE).is_file():
                out.append(self.status(path.name))
        return sorted(out, key=lambda s: s.created_at, reverse=True)

    def active(self) -> JobStatus | None:
        """The job that is running now, if any."""
        return next((s for s in self.list() if s.running), None)

    def progress(self, job_id: str) -> list[dict[str, Any]]:
        """The job's progress events, oldest first."""
        return read_progress(self.job_dir(job_id) / PROGRESS_FILE)

    def log_tail(self, job_id: str, lines: int = 40) -> str:
        """The end of the job's log."""
        return tail(self.job_dir(job_id) / LOG_FILE, lines)

    def spec(self, job_id: str) -> TrainingSpec:
        """The job's training settings."""
        return TrainingSpec.load(self.job_dir(job_id) / "job.yaml")

    def checkpoints(self, job_id: str) -> list[Path]:
        """Saved checkpoints, oldest first."""
        folder = self.job_dir(job_id) / "checkpoints"
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.name.startswith("checkpoint-") and p.name[11:].isdigit()]
        return sorted(found, key=lambda p: int(p.name[11:]))

    def delete(self, job_id: str) -> None:
        """Remove a finished job's folder (its adapter, if any, stays)."""
        status = self.status(job_id)
        if status.running:
            raise TrainingJobError(f"Job {job_id} is running; stop it first.")
        shutil.rmtree(self.job_dir(job_id))


def summarise_progress(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The latest step, total, losses, rates, ETA and phase, for a progress bar and a chart."""
    out: dict[str, Any] = {"step": 0, "total": None, "phase": None, "loss": None, "eval_loss": None,
                           "eta_s": None, "tokens_per_s": None, "learning_rate": None, "memory_mb": None,
                           "train_points": [], "eval_points": [], "model": None, "compare": None, "data": None}
    for e in events:
        kind = e.get("event")
        if kind == "phase":
            out["phase"] = e.get("phase")
            if "step" in e:  # exports report their stages as steps
                out["step"], out["total"] = e["step"], e.get("total")
        elif kind == "model":
            out["model"] = e
            out["total"] = out["total"] or e.get("planned_steps")
        elif kind == "train_begin":
            out["step"], out["total"] = e.get("step", 0), e.get("total")
        elif kind == "log":
            out.update(step=e["step"], total=e.get("total"), loss=e.get("loss"), eta_s=e.get("eta_s"),
                       tokens_per_s=e.get("tokens_per_s"), learning_rate=e.get("learning_rate"),
                       memory_mb=e.get("gpu_memory_mb") if e.get("gpu_memory_mb") is not None
                       else e.get("rss_peak_mb"))
            out["train_points"].append((e["step"], e.get("loss")))
        elif kind == "eval":
            out["eval_loss"] = e.get("eval_loss")
            out["eval_points"].append((e["step"], e.get("eval_loss")))
        elif kind == "data":  # what the job trains on, after leaving out examples for length
            out["data"] = e
        elif kind == "compare":
            out["compare"] = (e.get("done"), e.get("total"))
        elif kind == "end":
            out["phase"] = e.get("state")
            out["eta_s"] = None
    return out
