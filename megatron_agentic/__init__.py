"""megatron-agentic: Agentic Continual Pre-training on megatron-core."""
