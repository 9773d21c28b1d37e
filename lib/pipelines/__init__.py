"""Multi-step pipelines over many rows: definitions and versions, conditions, structured output, runs on the job queue,
review gates.

Modules: `definition` (PromptStep, GateStep, Pipeline, PipelineError), `conditions` (the safe expression language),
`output` (schema-checked JSON), `store` (PipelineStore: versions, labels, diff), `inputs` (CSV/JSONL rows, preview,
missing columns), `steps` (one step of one row through the gateway), `runs` (start, status, cancel, resume, retry,
results; the queue's task), `review` (review queue, decide, timeouts), `trial` (try one row, cost estimate),
`export` (CSV/JSONL), `examples` (the shipped pipelines), `writer` (group commit of step results).
Imports lib.core, lib.gateway, lib.jobs, lib.prompts and lib.compare (test sets as input); never lib.ui.
"""
