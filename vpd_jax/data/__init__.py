"""Tasks for vpd_jax: LiveCodeBench, SciKnowEval, the bundled and generated problems.

Importing this package registers the TFDS builders `livecodebench`,
`sciknoweval`, `vpd_problems` and `vpd_generated`; they write array_record
files and are read with `tfds.data_source`, so neither building nor reading
needs TensorFlow.

    task = load_task("vpd_problems")
    it = ExampleIterator(task.train, batch_size=8, seed=0)
    batch = it.next_batch()
    prompts = [task.user_prompt(ex) for ex in batch]
    results = task.grade(batch, completions, client=feedback_client)
"""

from vpd_jax.data.bundled import bundled_problems, reference_solutions
from vpd_jax.data.choice import extract_choice, grade_choice
from vpd_jax.data.example import DataFormatError, Example, code_example
from vpd_jax.data.iterator import ExampleIterator, epoch_order, host_shard
from vpd_jax.data.livecodebench import (Livecodebench, LiveCodeBenchConfig,
                                        split_feedback_tests)
from vpd_jax.data.sciknoweval import Sciknoweval, SciKnowEvalConfig
from vpd_jax.data.sources import ExampleSource, in_memory
from vpd_jax.data.tasks import Task, load_task
from vpd_jax.data.vpd_generated import VpdGenerated
from vpd_jax.data.vpd_problems import VpdProblems

__all__ = [
    "DataFormatError", "Example", "ExampleIterator", "ExampleSource",
    "LiveCodeBenchConfig", "Livecodebench", "SciKnowEvalConfig", "Sciknoweval",
    "Task", "VpdGenerated", "VpdProblems", "bundled_problems", "code_example", "epoch_order",
    "extract_choice", "grade_choice", "host_shard", "in_memory", "load_task",
    "reference_solutions", "split_feedback_tests",
]
