"""The offline agent environment: the tool registry (what tools exist, their schemas, validation
of calls), the executor of calls (BM25 search, visit, sandboxed python, custom tools), and the
corpus index they run over. See registry.py and docs/data_synthesis.md (Environment)."""

from data_synthesis.environment.executor import Environment, EnvironmentConfig, ToolResult
from data_synthesis.environment.registry import ToolRegistry, ToolSpec

__all__ = ["Environment", "EnvironmentConfig", "ToolRegistry", "ToolResult", "ToolSpec"]
