"""The pure reward core (stdlib + numpy only): parsing, accuracy, ATAR, judge prompts, combination."""
