"""Multi-step pipelines over many rows: definitions and versions, conditions, structured output, runs on the job queue, review gates."""
