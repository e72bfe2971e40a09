"""Quality tasks: items to put to a model and the metric that scores its answers.

API (the runner, CLI and report use only these names):

    list_tasks(include_hf=False) -> list[TaskInfo]       name, kind, metrics, max_new_tokens, n_items...
    get_task(name) -> Task                                built-in set, or "hf:<preset>"
    load_task_file(path, fmt=None, *, name=None, **options) -> Task
                                                          fmt in TASK_FORMATS: squad, jsonl-summary,
                                                          jsonl-translation, tsv-label, text (None:
                                                          from the suffix .json/.tsv/.txt)
    task.items(limit=None) -> list[TaskItem]              the first `limit` items, file order
    task.score(items, outputs: list[str]) -> TaskScore    generative tasks (needs_logprobs False)
    task.score_logprobs(items, logprobs: list[list[float]], token_counts=None) -> TaskScore
                                                          perplexity (needs_logprobs True);
                                                          token_counts: each prompt's token count
    TaskItem:  id, messages (chat, templated by the runner), reference, text (perplexity), source
    TaskScore: metrics {name: float}, per_item [dict], n, info {counts}
    task.primary_metric / task.higher_is_better           what "quality" means for this task
    METRIC_DIRECTIONS                                     "max" or "min" for every metric name

Kinds and metrics (first = primary; all in [0, 1] except perplexity; all higher-is-better except
perplexity and unparsed_rate):
    classification  macro_f1, accuracy, unparsed_rate     classification.py (answer parsing rule)
    qa              f1, exact_match (SQuAD v1.1/v2)       qa.py (answer extraction rule)
    summarization   rougeL, rouge1, rouge2, factuality, coherence    summarization.py, coherence.py
    translation     chrf, bleu, coherence                  translation.py
    perplexity      perplexity (lower is better)           perplexity.py (which tokens count)

Importing this package loads no metric library (rouge_score, sacrebleu, nltk) and no `datasets`:
they are imported when a task is scored or a hub preset is loaded.
"""

from wattlab.workloads.tasks.base import (
    METRIC_DIRECTIONS,
    TASK_KINDS,
    Task,
    TaskInfo,
    TaskItem,
    TaskKind,
    TaskScore,
)
from wattlab.workloads.tasks.registry import BUILTIN_TASKS, TASK_FORMATS, get_task, list_tasks, load_task_file

__all__ = [
    "BUILTIN_TASKS",
    "METRIC_DIRECTIONS",
    "TASK_FORMATS",
    "TASK_KINDS",
    "Task",
    "TaskInfo",
    "TaskItem",
    "TaskKind",
    "TaskScore",
    "get_task",
    "list_tasks",
    "load_task_file",
]
