"""Ray actors hosting reward computation (the LLM-judge pool)."""
