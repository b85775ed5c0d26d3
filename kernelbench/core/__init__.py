"""The ground every layer stands on: problem, workload, solution and trace models, dtypes, inputs,
correctness, scoring, the store and the settings object. Imports nothing of kernelbench above it."""
