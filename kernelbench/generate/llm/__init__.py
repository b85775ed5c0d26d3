"""The LLM proposer: an OpenAI-compatible client with a per-task budget (client.py), prompts built from
the task (prompts.py, prompts/*.j2), answers parsed into solutions (parsing.py), the research loop that
judges every answer like any candidate (proposer.py) and its log in the store (log.py).

`kb optimize TASK --llm MODEL` runs the loop after the search; `kb llm log` reads the log.
"""

from .client import LLMConfig
from .proposer import research

__all__ = ["LLMConfig", "research"]
