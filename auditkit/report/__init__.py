"""Reports of an audit: rendering (HTML, PDF, Markdown, JSON, model card), sign-off, integrity, diff."""
