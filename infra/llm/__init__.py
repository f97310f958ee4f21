"""LLM providers behind one interface (`domain.llm.LlmProvider`), and the one retry layer."""
