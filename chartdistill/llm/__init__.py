"""The LLM layer: request/result types, backends (OpenAI-compatible, embedded), cache, factory."""
