"""The browser page of `mimicbrush serve`: `session` holds the logic, `page` the gradio layout."""
