"""The executor: runs a validated tool call against the offline environment.

`Environment.execute({"name", "arguments"}) -> ToolResult(text, ok, error)` never raises on a
bad call or a failing tool: the reason goes in `error` (an invalid call is refused with the
registry's reason, a tool that fails or times out says so), so a rollout continues and the model
sees what went wrong, as with a real web agent.

- search / google_scholar: BM25 (environment/index.py) over the configured corpora, top-10
  passages per query with title, url and snippet (the Tongyi DeepResearch result layout);
- visit: each page's text (truncated), or with an LLM backend the evidence and a summary toward
  the call's `goal` (the paper's visit tool);
- python: the sandbox (environment/sandbox.py);
- parse_file: text files under `files_dir`;
- custom tools: a Python entry point, a command, or a BM25 search over the tool's own corpus
  (declared in the registry's YAML, see examples/custom_tools/).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from data_synthesis.environment.index import DEFAULT_CACHE, SHARD_MB, CorpusIndex, Hit, IndexConfig
from data_synthesis.environment.registry import ToolRegistry, ToolSpec
from data_synthesis.environment.sandbox import run_python

BUNDLED_CORPUS = str(Path(__file__).resolve().parents[1] / "data" / "corpus.jsonl")

VISIT_SUMMARY_PROMPT = """You read a web page for a research agent.
Goal: {goal}

Page ({url}):
{page}

Write the passages of the page that bear on the goal (quote them), then a short summary toward the
goal. If the page says nothing about it, say so.
Evidence:"""


@dataclass
class ToolResult:
    """What the model sees in <tool_response> (`text`), and whether the call worked."""

    text: str
    ok: bool = True
    error: str | None = None


@dataclass
class EnvironmentConfig:
    """The offline environment of a run (the `environment:` section of a pipeline or eval
    config)."""

    corpora: list[str] = field(default_factory=lambda: [BUNDLED_CORPUS])
    scholar_corpora: list[str] = field(default_factory=list)  # google_scholar; empty: corpora
    files_dir: str | None = None  # parse_file reads files under it
    cache_dir: str = DEFAULT_CACHE
    passage_words: int = 120
    passage_stride: int = 100
    index_shards: int = 0  # shards of a corpus's index (0: one per index_shard_mb of corpus)
    index_shard_mb: int = SHARD_MB  # the layout changes no search over every shard
    # N: a question's searches cover the shards of its source documents plus shards drawn by
    # its id, N in all (32 MiB of text at the default shard size, a few thousand documents; the
    # cluster config: 4 of 8 GiB), so a search's cost stops growing with the corpus; an index of
    # N shards or fewer is searched whole, as with 0: every shard, exact over the corpus
    # (CorpusIndex.scope; docs/data_synthesis.md)
    search_shards: int = 2
    top_k: int = 10
    snippet_chars: int = 300
    visit_max_chars: int = 6000
    visit_summary: Literal["auto", "off"] = "auto"  # auto: an LLM summary when a backend exists
    python_timeout_s: float = 10.0
    python_memory_mb: int = 1024
    tool_timeout_s: float = 30.0  # custom tools
    max_output_chars: int = 6000
    # documents no tool may return (ids or urls, one per line): the held-out documents of the
    # evaluation split, hidden from the rollouts that make training data
    exclude_docs_file: str | None = None

    @classmethod
    def from_dict(cls, raw: dict | None, where: str = "environment") -> EnvironmentConfig:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        for key in ("corpora", "scholar_corpora"):
            if isinstance(raw.get(key), str):
                raw[key] = [raw[key]]
        config = cls(**raw)
        for key in ("index_shards", "search_shards"):
            if not isinstance(getattr(config, key), int) or getattr(config, key) < 0:
                raise ValueError(f"{where}.{key}: an integer >= 0, got {getattr(config, key)!r}")
        if not isinstance(config.index_shard_mb, int) or config.index_shard_mb <= 0:
            raise ValueError(
                f"{where}.index_shard_mb: an integer > 0, got {config.index_shard_mb!r}"
            )
        return config

    def index_config(self) -> IndexConfig:
        return IndexConfig(
            self.cache_dir,
            self.passage_words,
            self.passage_stride,
            shards=self.index_shards,
            shard_bytes=self.index_shard_mb << 20,
        )


@dataclass(frozen=True)
class Scope:
    """Whose searches these are: a question's id and source documents (`search_shards`)."""

    key: str
    docs: tuple[str, ...] = ()

    @classmethod
    def of(cls, question: dict) -> Scope | None:
        """A question's scope (None for one without an id: its searches cover every shard)."""
        if "id" not in question:
            return None
        return cls(str(question["id"]), tuple(question.get("source_docs") or ()))


@dataclass(frozen=True)
class Hidden:
    """The documents no tool may return: ids or urls `listed` (`exclude_docs_file`) and the
    ids a `heldout` rule holds out (eval/heldout.py's HeldoutRule: computed per id, so nothing
    per held-out document is kept in memory)."""

    listed: set[str] = field(default_factory=set)
    heldout: object | None = None

    def __bool__(self) -> bool:
        return bool(self.listed) or self.heldout is not None

    def doc(self, doc_id: str, url: str) -> bool:
        if doc_id in self.listed or url in self.listed:
            return True
        return self.heldout is not None and doc_id in self.heldout


class Environment:
    """Executes calls of the registry's tools; indexes are opened lazily (first search)."""

    def __init__(
        self,
        registry: ToolRegistry | None = None,
        config: EnvironmentConfig | None = None,
        llm=None,
        log=print,
        heldout=None,
        named: dict[tuple[str, ...], str] | None = None,
    ):
        self.registry = registry or ToolRegistry.from_config(None)
        self.config = config or EnvironmentConfig()
        self.llm, self.log = llm, log
        self._indexes: dict[tuple[str, ...], CorpusIndex] = {}
        self._named = named or {}  # corpora -> index directory, named when the run was planned
        self._scoped: set[CorpusIndex] = set()  # indexes whose scoped searches were announced
        self._pool = ThreadPoolExecutor(max_workers=4)
        listed: set[str] = set()
        if self.config.exclude_docs_file:
            lines = Path(self.config.exclude_docs_file).read_text(encoding="utf-8").splitlines()
            listed = {line.strip() for line in lines if line.strip()}
        self.hidden = Hidden(listed, heldout)

    # --- entry point --------------------------------------------------------------------------

    def execute(self, call: dict, scope: Scope | None = None) -> ToolResult:
        """Run one call; `scope`: the question it is made for, which limits its searches to
        that question's shards when `search_shards` is set (else ignored)."""
        reason = self.registry.validate_call(call)
        if reason:
            return ToolResult(f"Error: {reason}", False, reason)
        spec = self.registry.get(call["name"])
        try:
            return self._dispatch(spec, call["arguments"], scope)
        except Exception as error:  # a tool's failure is the model's observation, not a crash
            reason = f"tool error: {type(error).__name__}: {error}"
            return ToolResult(f"Error: {reason}", False, reason)

    def _dispatch(self, spec: ToolSpec, arguments: dict, scope: Scope | None) -> ToolResult:
        if spec.kind == "none":
            reason = f"tool {spec.name!r} is declared but has no implementation (add `run:`)"
            return ToolResult(f"Error: {reason}", False, reason)
        if spec.kind == "search":
            corpus = _resolve(spec.run["search"]["corpus"], spec)
            return self.search(arguments.get("query") or [], [corpus], scope)
        if spec.kind == "python":
            return self._entry_point(spec, arguments)
        if spec.kind == "command":
            return self._command(spec, arguments)
        return getattr(self, f"_builtin_{spec.name}")(arguments, scope)

    # --- built-ins ----------------------------------------------------------------------------

    def index(self, corpora: list[str]) -> CorpusIndex:
        key = tuple(corpora)
        if key not in self._indexes:
            config, directory = self.config.index_config(), self._named.get(key)
            self._indexes[key] = CorpusIndex.open(corpora, config, self.log, directory)
        return self._indexes[key]

    def search(
        self, queries: list[str], corpora: list[str] | None = None, scope: Scope | None = None
    ) -> ToolResult:
        index = self.index(corpora or self.config.corpora)
        shards = self._shards(index, scope)
        blocks = [self._format_hits(q, self._hits(index, q, shards)) for q in queries]
        return ToolResult(self._truncate("\n=======\n".join(blocks)))

    def _shards(self, index: CorpusIndex, scope: Scope | None) -> tuple[int, ...] | None:
        """The shards of `index` a scope's searches cover (None: all)."""
        if scope is None or not self.config.search_shards:
            return None
        shards = index.scope(scope.key, list(scope.docs), self.config.search_shards)
        if shards is not None and index not in self._scoped:
            self._scoped.add(index)
            self.log(
                f"environment: a question's searches cover {self.config.search_shards} of the "
                f"index's {len(index.shards)} shards (environment.search_shards; 0: every shard)"
            )
        return shards

    def _hits(self, index: CorpusIndex, query: str, shards: tuple[int, ...] | None) -> list[Hit]:
        k = self.config.top_k
        if not self.hidden:
            return index.search(query, k, shards)
        kept = []  # the first k of the top 5k that are not hidden, ranked anew
        for hit in index.ranked(query, k + 4 * k, shards):
            if not self.hidden.doc(hit.doc_id, hit.url):
                hit.rank = len(kept) + 1
                kept.append(hit)
                if len(kept) == k:
                    break
        return kept

    def _format_hits(self, query: str, hits: list[Hit]) -> str:
        if not hits:
            return f"No results found for '{query}'. Try a more general query."
        lines = [f"A search for '{query}' found {len(hits)} results:", "", "## Web Results"]
        for hit in hits:
            lines.append(f"{hit.rank}. [{hit.title}]({hit.url})\n{self._snippet(hit.text)}")
        return "\n".join(lines)

    def _snippet(self, text: str) -> str:
        limit = self.config.snippet_chars
        return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."

    def _builtin_search(self, arguments: dict, scope: Scope | None = None) -> ToolResult:
        return self.search(arguments["query"], None, scope)

    def _builtin_google_scholar(self, arguments: dict, scope: Scope | None = None) -> ToolResult:
        return self.search(arguments["query"], self.config.scholar_corpora or None, scope)

    def _builtin_visit(self, arguments: dict, scope: Scope | None = None) -> ToolResult:
        index = self.index(self.config.corpora)
        parts, found = [], 0
        for url in arguments["url"]:
            page = None if url in self.hidden.listed else index.page(url)
            if page is not None and self.hidden.doc(str(page.get("id")), url):
                page = None
            if page is None:
                parts.append(f"The useful information in {url}: the page could not be found.")
                continue
            found += 1
            parts.append(self._page_text(url, page, arguments["goal"]))
        text = self._truncate("\n=======\n".join(parts))
        return ToolResult(text, found > 0, None if found else "page not found")

    def _page_text(self, url: str, page: dict, goal: str) -> str:
        text = page["text"][: self.config.visit_max_chars]
        title = page.get("title") or url
        if self.llm is None or self.config.visit_summary == "off":
            return f"The content of {url} ({title}):\n{text}"
        prompt = VISIT_SUMMARY_PROMPT.format(goal=goal, url=url, page=text)
        summary = self.llm.generate([[{"role": "user", "content": prompt}]], seed=0)[0].strip()
        return f"The useful information in {url} ({title}) for the goal '{goal}':\n{summary}"

    def _builtin_python(self, arguments: dict, scope: Scope | None = None) -> ToolResult:
        result = run_python(
            arguments["code"],
            self.config.python_timeout_s,
            self.config.python_memory_mb,
            self.config.max_output_chars,
        )
        text = result.output if result.ok else f"{result.output}\n[{result.error}]".lstrip()
        return ToolResult(text or "(no output)", result.ok, result.error)

    def _builtin_parse_file(self, arguments: dict, scope: Scope | None = None) -> ToolResult:
        if not self.config.files_dir:
            return ToolResult("Error: no files_dir configured", False, "no files_dir configured")
        root = Path(self.config.files_dir).resolve()
        parts = []
        for name in arguments["files"]:
            path = (root / name).resolve()
            if root not in path.parents or not path.is_file():
                parts.append(f"{name}: no such file")
                continue
            parts.append(f"{name}:\n{path.read_text(encoding='utf-8', errors='replace')}")
        return ToolResult(self._truncate("\n=======\n".join(parts)))

    # --- custom tools -------------------------------------------------------------------------

    def _entry_point(self, spec: ToolSpec, arguments: dict) -> ToolResult:
        function = _load_entry_point(spec)
        future = self._pool.submit(function, **arguments)
        try:
            value = future.result(timeout=self.config.tool_timeout_s)
        except FutureTimeout:
            reason = f"timeout after {self.config.tool_timeout_s:g} s"
            return ToolResult(f"Error: {reason}", False, reason)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return ToolResult(self._truncate(text))

    def _command(self, spec: ToolSpec, arguments: dict) -> ToolResult:
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
        argv = [part.format(**values) for part in spec.run["command"]]
        stdin_key = spec.run.get("stdin")
        stdin = values.get(stdin_key, "") if stdin_key else json.dumps(arguments)
        try:
            done = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.config.tool_timeout_s,
                cwd=spec.run.get("base_dir") or None,
            )
        except subprocess.TimeoutExpired:
            reason = f"timeout after {self.config.tool_timeout_s:g} s"
            return ToolResult(f"Error: {reason}", False, reason)
        text = self._truncate((done.stdout + done.stderr).strip() or "(no output)")
        if done.returncode:
            return ToolResult(text, False, f"exit code {done.returncode}")
        return ToolResult(text)

    def _truncate(self, text: str) -> str:
        limit = self.config.max_output_chars
        if len(text) <= limit:
            return text
        return text[:limit] + f"\n[... truncated: {len(text) - limit} more characters]"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _resolve(path: str, spec: ToolSpec) -> str:
    """A path of a tool's YAML: as given when it exists, else relative to the YAML's folder."""
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute():
        return str(candidate)
    return str(Path(spec.run.get("base_dir", ".")) / candidate)


def _load_entry_point(spec: ToolSpec):
    target, _, function = spec.run["python"].rpartition(":")
    if target.endswith(".py"):
        path = Path(_resolve(target, spec))
        module_spec = importlib.util.spec_from_file_location(f"tool_{spec.name}", path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"tool {spec.name}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    if not hasattr(module, function):
        raise AttributeError(f"tool {spec.name}: {target} has no function {function!r}")
    return getattr(module, function)


def environment_for(
    config, llm=None, heldout=None, base_dir: str | Path | None = None, named=None
) -> Environment:
    """The environment of a pipeline config: its `tools` list (built-ins + custom tools; paths in
    a tool's `run` relative to `base_dir`, the config file's folder) and its `environment:`
    section (when the config has one); `heldout`: a rule of documents to hide besides the
    config's `exclude_docs_file` (eval/heldout.py's HeldoutRule); `named`: the index directory
    of each list of corpora, named when the run was planned (`Environment`)."""
    base_dir = base_dir or getattr(config, "config_dir", None)
    registry = ToolRegistry.from_config(getattr(config, "tools", None), base_dir=base_dir)
    raw = getattr(config, "environment", None)
    env_config = raw if isinstance(raw, EnvironmentConfig) else EnvironmentConfig.from_dict(raw)
    return Environment(registry, env_config, llm, heldout=heldout, named=named)
