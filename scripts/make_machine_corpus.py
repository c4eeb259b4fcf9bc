"""Build a synthesis corpus from English prose found on any Debian/Ubuntu machine: package READMEs
(/usr/share/doc/*/README*, plain or gzipped) and the module docstrings of Python's standard
library. It is the "text the extractor never saw" corpus of docs/data_synthesis.md: nothing in it
was written for this project.

    python scripts/make_machine_corpus.py --output runs/machine_corpus.jsonl --max-docs 200

`--source package-readmes` takes instead the markdown READMEs of the installed Python packages
(the long descriptions in site-packages/*.dist-info/METADATA, 2,000 characters or more), whole
and as written - badges, links, code blocks, tables, changelogs: the markdown corpus.
"""

from __future__ import annotations

import argparse
import ast
import glob
import gzip
import json
import re
import sysconfig
from pathlib import Path

MIN_CHARS, MAX_CHARS = 300, 2000


def _read(path: str) -> str:
    try:
        raw = gzip.open(path).read() if path.endswith(".gz") else Path(path).read_bytes()
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return ""


def prose_paragraphs(text: str) -> list[str]:
    """Paragraphs that read as prose: mostly letters, sentences, no code or tables."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        flat = " ".join(line.strip() for line in block.splitlines())
        letters = sum(c.isalpha() or c == " " for c in flat)
        if (
            len(flat) >= 120
            and letters > 0.85 * len(flat)
            and flat.count(". ") >= 1
            and not re.search(r"[{}<>|=]{2}|\$ |^\s*[-*#]", flat)
        ):
            out.append(flat)
    return out


def documents(max_docs: int) -> list[dict]:
    sources = []
    for path in sorted(glob.glob("/usr/share/doc/*/README*")):
        sources.append((Path(path).parent.name, path, _read(path)))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            doc = None
        if doc:
            sources.append((f"Python {path.stem} module", str(path), doc))
    docs = []
    for title, path, text in sources:
        chunk = ""
        for paragraph in prose_paragraphs(text):
            chunk = f"{chunk} {paragraph}".strip()
            if len(chunk) >= MIN_CHARS:
                docs.append(
                    {
                        "id": f"m{len(docs):04d}",
                        "title": title,
                        "url": f"file://{path}",
                        "text": chunk[:MAX_CHARS],
                    }
                )
                chunk = ""
        if len(docs) >= max_docs:
            break
    return docs[:max_docs]


def package_readmes(max_docs: int) -> list[dict]:
    """The installed packages' markdown READMEs, whole, in package-name order."""
    import email
    import site

    docs = []
    for root in site.getsitepackages():
        for path in sorted(Path(root).glob("*.dist-info/METADATA")):
            meta = email.message_from_string(path.read_text(encoding="utf-8", errors="replace"))
            body = meta.get_payload()
            markdown = "markdown" in (meta.get("Description-Content-Type") or "")
            if markdown and isinstance(body, str) and len(body) >= 2000:
                name = meta.get("Name")
                docs.append(
                    {
                        "id": f"readme-{name}",
                        "title": name,
                        "url": f"https://pypi.org/project/{name}/",
                        "text": body,
                    }
                )
    return docs[:max_docs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--max-docs", type=int, default=200)
    parser.add_argument(
        "--source", choices=("prose", "package-readmes"), default="prose", help="see above"
    )
    args = parser.parse_args(argv)
    docs = (package_readmes if args.source == "package-readmes" else documents)(args.max_docs)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    print(f"{len(docs)} documents -> {args.output}")
    return 0 if docs else 1


if __name__ == "__main__":
    raise SystemExit(main())
