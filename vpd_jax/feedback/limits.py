"""Resource limits of one sandboxed test run."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-test limits. CPU time decides time_limit_exceeded, wall time is a
    backstop for programs that sleep or block: a loaded host slows wall time,
    not the CPU time a program needs, so CPU time is the fair clock.
    """
    time_s: float = 6.0  # CPU seconds per test (LiveCodeBench's timeout).
    wall_s: float | None = None  # Wall seconds; None: 2 * time_s + 2.
    memory_mb: int = 2048  # Address space of the fresh interpreter.
    output_bytes: int = 32 << 20  # Largest stdout/stderr/file a program writes.
    nproc: int = 16  # Processes and threads the sandbox may hold at once.
    nofile: int = 256  # Open file descriptors.
    stack_mb: int = 256  # Main-thread stack (deep recursion at limit 50000).

    @property
    def wall_limit_s(self) -> float:
        return self.wall_s if self.wall_s is not None else 2 * self.time_s + 2

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> "Limits":
        """Limits from a request; unknown keys are an error, not ignored."""
        if not data:
            return cls()
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict):
            raise ValueError(f"limits must be an object, got "
                             f"{type(data).__name__}")
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown limit(s) {sorted(unknown)}; known: "
                             f"{sorted(fields)}")
        for name, value in data.items():
            if value is None and name == "wall_s":
                continue
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or not 0 < value < 1e12):
                raise ValueError(f"limit {name}={value!r}: expected a "
                                 f"positive number")
        return cls(**data)

    def harness_json(self) -> dict:
        """What the harness sets with setrlimit (integers, bytes)."""
        return {
            "cpu_s": max(1, int(-(-self.time_s // 1))),  # RLIMIT_CPU has 1 s steps
            "memory_bytes": int(self.memory_mb) << 20,
            "output_bytes": int(self.output_bytes),
            "nproc": int(self.nproc),
            "nofile": int(self.nofile),
            "stack_bytes": int(self.stack_mb) << 20,
        }
